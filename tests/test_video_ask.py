"""Video through the whole path: runner and `mmchat ask --video`, on the generated models."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mmchat import Runner, text_part, video_part
from mmchat.errors import UnsupportedMedia
from tests.support.helpers import GREEDY, GREEDY_ARGS, THREADS, model_args, run_mmchat
from tests.support.videofiles import audio_only_m4a, first_half, write_video, zero_length_avi


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "tone": write_video(d / "tone.mp4", seconds=4, tone_from=0.0),
        "tone_late": write_video(d / "tone_late.mp4", seconds=4, tone_from=2.0),
        "changed": write_video(d / "changed.mp4", seconds=4, tone_from=0.0, changed=20),
        "silent": write_video(d / "silent.mp4", seconds=4),
    }


@pytest.fixture(scope="module")
def omni(models):
    with Runner(models["llm"], models["mmproj-omni"], n_ctx=4096, threads=THREADS) as r:
        yield r


def ask(runner, video: Path | str, **options):
    return runner.chat(
        [{"role": "user", "content": [video_part(str(video)), text_part("What happens?")]}], **{**GREEDY, **options}
    )


def test_frames_become_timestamped_images_in_time_order(omni, clips):
    turns = omni.prepare([{"role": "user", "content": [video_part(str(clips["silent"]), fps=1), text_part("?")]}])
    texts = [s for s in turns[0].segments if isinstance(s, str)]
    assert texts == ["[00:00]", "[00:01]", "[00:02]", "[00:03]", "?"]
    prompt = omni.prompt([{"role": "user", "content": [video_part(str(clips["silent"]), fps=1), text_part("?")]}])
    assert prompt.count("<__media__>") == 4 and prompt.index("[00:00]") < prompt.index("[00:03]")
    reply = ask(omni, clips["silent"])
    assert reply.usage.image_tokens == 4 * 16 and reply.usage.audio_tokens == 0


def test_max_frames_and_per_request_defaults(omni, clips):
    assert ask(omni, clips["silent"], video_fps=2).usage.image_tokens == 8 * 16
    assert ask(omni, clips["silent"], video_fps=2, video_max_frames=3).usage.image_tokens == 3 * 16
    part = video_part(str(clips["silent"]), fps=2, max_frames=5, start="00:01", end=3)
    reply = omni.chat([{"role": "user", "content": [part, text_part("?")]}], **GREEDY)
    assert reply.usage.image_tokens == 4 * 16  # 2 s at 2 fps


def test_the_answer_follows_one_changed_frame(omni, clips):
    assert ask(omni, clips["tone"], video_fps=5).content != ask(omni, clips["changed"], video_fps=5).content


def test_the_soundtrack_is_heard_and_can_be_left_out(omni, clips):
    with_sound = ask(omni, clips["tone"])
    without = ask(omni, clips["tone"], video_audio=False)
    assert with_sound.usage.audio_tokens == 750 and without.usage.audio_tokens == 0
    assert with_sound.usage.prompt_tokens == without.usage.prompt_tokens + 750 + 2  # + <|audio_bos|>, <|audio_eos|>
    assert with_sound.content != ask(omni, clips["tone_late"]).content  # the sound reaches the model


def test_a_model_without_vision_is_refused_before_decoding(models):
    with Runner(models["llm"], models["mmproj-audio"], n_ctx=2048, threads=THREADS) as r:
        with pytest.raises(UnsupportedMedia, match="takes audio, not video"):
            ask(r, "/does/not/exist.mp4")


def test_every_url_form_gives_the_same_answer(models, clips):
    base = [
        "ask",
        "What happens?",
        *model_args(models, "mmproj-omni"),
    ]
    clip = clips["tone"]
    answers = {
        "path": run_mmchat(*base, "--video", str(clip)),
        "file": run_mmchat(*base, "--video", clip.resolve().as_uri()),
        "data": run_mmchat(*base, "--video", "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()),
        "stdin": run_mmchat(*base, "--video", "-", stdin=clip.read_bytes()),
    }
    for name, out in answers.items():
        assert out.returncode == 0, (name, out.stderr)
    assert len({out.stdout for out in answers.values()}) == 1 and answers["path"].stdout.strip()


def test_bad_video_files_exit_2_with_one_line(models, tmp_path, clips):
    bad = {
        "no video stream": (tmp_path / "talk.m4a", audio_only_m4a()),
        "truncated": (tmp_path / "cut.mp4", first_half(clips["tone"])),
        "zero-length": (tmp_path / "empty.avi", zero_length_avi(tmp_path / "z.avi")),
        "text named .mp4": (tmp_path / "notes.mp4", b"meeting notes, not a video\n" * 10),
    }
    for name, (path, data) in bad.items():
        path.write_bytes(data)
        out = run_mmchat(
            "ask", "What?", *model_args(models, "mmproj-omni", greedy=False, threads=False), "--video", str(path)
        )
        err = out.stderr.decode()
        assert out.returncode == 2, (name, err)
        assert err.count("\n") == 1 and err.startswith("mmchat: error: ") and path.name in err, (name, err)
        assert out.stdout == b""


def test_json_usage_counts_frames_and_sound(models, clips):
    out = run_mmchat(
        "ask",
        "What?",
        "-m",
        str(models["llm"]),
        "--mmproj",
        str(models["mmproj-omni"]),
        "--video",
        str(clips["tone"]),
        "--fps",
        "0.5",
        "--json",
        *GREEDY_ARGS,
        "-n",
        "4",
    )
    data = json.loads(out.stdout)
    assert data["usage"]["prompt_tokens_details"]["image_tokens"] == 2 * 16
    assert data["usage"]["prompt_tokens_details"]["audio_tokens"] == 750
    assert data["timings"]["media_decode_s"] > 0


def test_frames_are_scaled_to_the_frame_budget(tmp_path):
    """Video frames get their own, smaller size cap: 32 full-size frames would fill any context."""
    from mmchat.testing import FakeEngine
    from tests.support.videofiles import write_video

    clip = write_video(tmp_path / "wide.mp4", seconds=2, size=(1280, 720))
    with Runner(engine=FakeEngine()) as r:
        turns = r.prepare([{"role": "user", "content": [video_part(str(clip))]}])
        assert {(s.width, s.height) for s in turns[0].segments if hasattr(s, "pixels")} == {(448, 252)}
        turns = r.prepare([{"role": "user", "content": [video_part(str(clip), max_side=640)]}])
        assert {(s.width, s.height) for s in turns[0].segments if hasattr(s, "pixels")} == {(640, 360)}


def test_qwen_vl_encodes_frames_two_by_two(models, clips):
    """Qwen-VL projectors take two adjacent frames as one temporal patch (as llama.cpp's own
    video path does): 4 frames cost 2 image chunks, cached under the pair, same answer every time."""
    with Runner(models["llm-qwen2vl"], models["mmproj-qwen2vl"], n_ctx=4096, threads=THREADS) as r:
        assert r.capabilities().frame_pairs
        turns = r.prepare([{"role": "user", "content": [video_part(str(clips["silent"])), text_part("?")]}])
        texts = [s for s in turns[0].segments if isinstance(s, str)]
        assert texts == ["[00:00]", "[00:02]", "?"]
        items = r.engine.tokenize(turns)
        chunks = [i for i in items if not isinstance(i, int)]
        assert len(chunks) == 2 and all(c.key.startswith("pair:") for c in chunks)
        first = ask(r, clips["silent"])
        encodes = r.engine.stats.media_encodes
        assert encodes == 2 and first.usage.image_tokens == sum(c.n_tokens for c in chunks)
        assert ask(r, clips["silent"]).content == first.content and r.engine.stats.media_encodes == encodes
        assert ask(r, clips["changed"], video_fps=5).content != ask(r, clips["tone"], video_fps=5).content
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=4096, threads=THREADS) as gemma:
        assert not gemma.capabilities().frame_pairs  # gemma3 encodes each frame on its own
