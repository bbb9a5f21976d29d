"""Bounded time and memory: sound that cannot fit is refused from its length before it is
decoded, an audio part's --start/--end decode only that part, and a URL has a total deadline
and a speed floor."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

import mmchat.media.audio
import mmchat.media.video
from mmchat import ContextOverflow, Runner, SourceError, audio_part, user_message, video_part
from mmchat.cli import app
from mmchat.env import Environment, use
from mmchat.inputs.sources import read_source
from mmchat.media.audio import decode_audio
from mmchat.testing import FakeEngine
from tests.support.helpers import Trickle, invoke, local_server, model_args, run_mmchat
from tests.support.mediafiles import tone_wav
from tests.support.videofiles import write_video

# --- long sound is refused from its length -------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any call to the audio or video decoders (none is expected)."""
    calls: list[str] = []

    def refuse(name: str):
        def decoder(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return decoder

    monkeypatch.setattr(mmchat.media.audio, "decode_audio", refuse("decode_audio"))
    monkeypatch.setattr(mmchat.media.video, "decode_video", refuse("decode_video"))
    return calls


def test_long_audio_is_refused_from_its_length_naming_start_and_end(tmp_path, no_decoding):
    wav = tone_wav(tmp_path / "talk.wav", seconds=60.0)  # 1500 tokens at 25 a second
    result, fake = invoke("ask", "transcribe", "-a", str(wav), engine=FakeEngine(n_ctx=1024))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mmchat: error: ")
    assert f"{wav} is 1:00 of sound, at least 1500 tokens" in result.stderr
    assert "context holds 1024" in result.stderr and "--start/--end" in result.stderr
    assert no_decoding == [] and fake.calls == []


def test_start_and_end_named_by_the_refusal_make_the_audio_fit(tmp_path):
    wav = tone_wav(tmp_path / "talk.wav", seconds=60.0)
    result, fake = invoke(
        "ask", "transcribe", "-a", str(wav), "--start", "0:10", "--end", "30", engine=FakeEngine(n_ctx=1024)
    )
    assert result.exit_code == 0, result.output
    (audio,) = [s for s in fake.calls[0][0][-1].segments if not isinstance(s, str)]
    assert audio.duration == pytest.approx(20.0, abs=0.01)


def test_a_long_soundtrack_is_refused_before_a_frame_is_decoded(tmp_path, no_decoding, monkeypatch):
    clip = write_video(tmp_path / "clip.mp4", seconds=12.0, fps=2, tone_from=0.0)
    runner = Runner(engine=FakeEngine(n_ctx=200))  # 12 s of sound: 300 tokens
    with pytest.raises(ContextOverflow, match=r"soundtrack of .*clip\.mp4.*--start/--end.*--no-video-audio"):
        runner.chat([user_message("what happens", [video_part(str(clip))])])
    assert no_decoding == []
    monkeypatch.undo()
    reply = runner.chat([user_message("what happens", [video_part(str(clip))])], video_audio=False)
    assert reply.choices[0].message.content.startswith("[00:00] [image")  # frames alone fit


def test_sound_from_a_data_url_is_refused_before_decoding(no_decoding):
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(16000 * 40, np.float32), 16000, format="WAV")
    runner = Runner(engine=FakeEngine(n_ctx=900))
    part = audio_part("data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode())
    with pytest.raises(ContextOverflow, match="40.0 s of sound"):
        runner.chat([user_message("hi", [part])])
    assert no_decoding == []


def test_the_real_projector_says_what_sound_costs(models, tmp_path):
    """The tiny audio model's projector: 750 tokens per 30 s window; 60 s cannot fit 1024."""
    wav = tone_wav(tmp_path / "minute.wav", seconds=60.0)
    base = [
        "ask",
        "hi",
        *model_args(models, "mmproj-audio"),
        "-a",
        str(wav),
        "--ctx-size",
        "1024",
        "--no-cache",
    ]
    refused = run_mmchat(*base)
    assert refused.returncode == 2, refused.stderr
    assert b"of sound, at least 1500 tokens" in refused.stderr and b"--start/--end" in refused.stderr
    part = run_mmchat(*base, "--start", "5", "--end", "15")
    assert part.returncode == 0, part.stderr


# --- an audio part's start and end ---------------------------------------------------------


def _steps(path, rate: int = 16000):
    """A WAV whose second k holds the constant value k/100: where a cut falls shows in the samples."""
    samples = np.repeat(np.arange(20, dtype=np.float32) / 100, rate)
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_decode_audio_with_start_and_end_keeps_only_that_part(tmp_path, source):
    path = _steps(tmp_path / "steps.wav")
    src = path if source == "path" else path.read_bytes()
    audio = decode_audio(src, label="steps.wav", sample_rate=16000, start=3.0, end=5.0)
    assert audio.duration == pytest.approx(2.0)
    assert audio.samples[100] == pytest.approx(0.03) and audio.samples[-100] == pytest.approx(0.04)


def test_decode_audio_start_and_end_in_a_compressed_file(tmp_path):
    import av

    path = tmp_path / "steps.m4a"
    samples = np.repeat(np.arange(20, dtype=np.float32) / 40, 16000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    audio = decode_audio(path, label="steps.m4a", sample_rate=16000, start=6.0, end=9.0)
    assert audio.duration == pytest.approx(3.0, abs=0.05)
    assert np.median(audio.samples[: 16000 // 2]) == pytest.approx(6 / 40, abs=0.02)


def test_audio_start_past_its_end_is_one_clear_line(tmp_path):
    wav = tone_wav(tmp_path / "short.wav", seconds=2.0)
    result, _ = invoke("ask", "hi", "-a", str(wav), "--start", "5")
    assert result.exit_code == 2 and "start 5 s is past its end" in result.stderr


# --- a URL has a total deadline ------------------------------------------------------------


@pytest.fixture(scope="module")
def trickle() -> Iterator[str]:
    with local_server(Trickle) as where:
        yield f"http://{where}"


@pytest.mark.parametrize("path", ["/slow.png", "/headers"])
def test_a_trickling_server_meets_the_deadline(trickle, path):
    url = trickle + path  # the server takes ~10 s to send it whole (how soon the deadline ends it: bench/bounds.py)
    with pytest.raises(SourceError) as caught:
        read_source(url, deadline=0.3)
    assert f"{url} did not arrive within 0.3 s" in str(caught.value) and "--url-deadline" in str(caught.value)


def test_the_deadline_is_an_option_and_one_line(trickle):
    result, fake = invoke("ask", "hi", "-i", trickle + "/slow.png", "--url-deadline", "0.2")
    assert result.exit_code == 2
    assert (
        result.stderr == f"mmchat: error: {trickle}/slow.png did not arrive within 0.2 s (--url-deadline): "
        "try again later, download it first, or raise --url-deadline\n"
    )
    assert fake.calls == []


# --- a URL slower than the floor for a stretch ends ----------------------------------------


@pytest.mark.parametrize("path", ["/slow.png", "/headers"])
def test_a_trickle_under_the_speed_floor_ends_in_the_stretch_naming_the_url_and_its_rate(trickle, path):
    url = trickle + path  # about 10 B/s for about 10 s: it would arrive whole, well within the deadline
    with pytest.raises(SourceError) as caught:
        read_source(url, speed_limit=1024, speed_time=0.3)
    assert re.fullmatch(
        rf"{re.escape(url)} came at [0-9.]+ B/s for 0.3 s, under the 1 KiB/s floor \(--speed-limit, "
        r"--speed-time\): try again later, download it first, or lower --speed-limit",
        str(caught.value),
    )


class _Steady(Trickle):
    seconds_per_byte = 0.003  # about 300 B/s: slow, but over a 60 B/s floor


def test_a_slow_download_over_the_floor_arrives_whole():
    with local_server(_Steady) as where:
        source = read_source(f"http://{where}/steady.png", speed_limit=60, speed_time=0.1)
    assert source.kind == "image" and source.data.startswith(b"\x89PNG")


def test_the_speed_floor_is_two_options_and_one_line(trickle):
    result, fake = invoke("ask", "hi", "-i", trickle + "/slow.png", "--speed-time", "0.2", "--speed-limit", "2K")
    assert result.exit_code == 2 and fake.calls == []
    assert re.fullmatch(
        rf"mmchat: error: {re.escape(trickle)}/slow.png came at [0-9.]+ B/s for 0.2 s, under the "
        r"2 KiB/s floor \(--speed-limit, --speed-time\): .*\n",
        result.stderr,
    )
    off = invoke("ask", "hi", "-i", trickle + "/slow.png", "--speed-limit", "0", "--url-deadline", "0.2")[0]
    assert "did not arrive within 0.2 s (--url-deadline)" in off.stderr  # 0: no floor, the deadline ends it
    bad = invoke("ask", "hi", "--speed-limit", "fast")[0]
    assert bad.exit_code == 2 and "--speed-limit 'fast' is not valid" in bad.stderr


def test_the_speed_floor_comes_from_config_toml(trickle, isolated_user_dir):
    from mmchat import config

    (isolated_user_dir / "config.toml").write_text('[defaults]\nspeed-limit = "4K"\nspeed-time = 0.2\n')
    env = Environment(engine=FakeEngine(), stdin_isatty=True, stdout_isatty=False, stderr_isatty=False, environ={})
    with use(env):  # as main() runs the app: [defaults] as the commands' default_map
        defaults = config.load_user_defaults()
        result = CliRunner().invoke(app, ["ask", "hi", "-i", trickle + "/slow.png"], default_map={"ask": defaults})
    assert result.exit_code == 2
    assert "for 0.2 s, under the 4 KiB/s floor" in result.stderr
