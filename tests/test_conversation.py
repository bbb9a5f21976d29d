"""The REPL's conversation state, without a terminal: attachments, turns, files, context."""

from __future__ import annotations

import json
import os

import pytest

from mmchat import atomic
from mmchat.chat import conversation as conv_mod
from mmchat.chat import files
from mmchat.chat.conversation import Conversation
from mmchat.errors import DiskFull, InputError, MediaError, SourceError, UnsupportedMedia
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.mediafiles import noise_png, tone_wav


@pytest.fixture
def runner():
    return Runner(engine=FakeEngine())


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "photo.png", seed=5)


def test_attachments_are_checked_detected_and_go_first(runner, png, tmp_path):
    wav = tone_wav(tmp_path / "sound.wav").rename(tmp_path / "named-like-an-image.png")  # bytes decide, not names
    conv = Conversation("Be brief.")
    assert conv.attach(runner, str(png)).kind == "image"
    assert conv.attach(runner, str(wav)).kind == "audio"
    message = conv.user_turn("What are these?")
    assert message == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": str(png.resolve())}},
            {"type": "audio_url", "audio_url": {"url": str(wav.resolve())}},
            {"type": "text", "text": "What are these?"},
        ],
    }
    assert conv.pending == []
    assert conv.to_model()[0] == {"role": "system", "content": "Be brief."}


def test_relative_paths_are_stored_absolute(runner, png, monkeypatch):
    monkeypatch.chdir(png.parent)
    a = Conversation().attach(runner, "photo.png")
    assert a.url == str(png.resolve()) and a.label == "photo.png"


@pytest.mark.parametrize(
    "make, kind, error, words",
    [
        (lambda d: d / "missing.png", None, SourceError, "file not found"),
        (lambda d: _write(d / "broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64), None, MediaError, "broken.png"),
        (lambda d: _write(d / "data.bin", bytes(range(256))), None, UnsupportedMedia, "force a kind"),
        (lambda d: noise_png(d / "p.png"), "audio", InputError, "is an image, not audio"),
        (lambda d: noise_png(d / "p.png"), "video", InputError, "is an image, not a video"),
    ],
)
def test_bad_attachments_raise_and_are_not_attached(runner, tmp_path, make, kind, error, words):
    conv = Conversation()
    with pytest.raises(error, match=words):
        conv.attach(runner, str(make(tmp_path)), kind)
    assert conv.pending == []


def test_media_the_model_cannot_take_is_refused_at_attach(tmp_path):
    text_only = Runner(engine=FakeEngine(vision=False, audio=False))
    with pytest.raises(UnsupportedMedia, match="takes text only, not images"):
        Conversation().attach(text_only, str(noise_png(tmp_path / "p.png")))


def test_detach_one_or_all(runner, tmp_path):
    conv = Conversation()
    paths = [noise_png(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    for p in paths:
        conv.attach(runner, str(p))
    assert [a.label for a in conv.detach(2)] == [str(paths[1])]
    with pytest.raises(InputError, match="no attachment 3: 1 to 2"):
        conv.detach(3)
    assert len(conv.detach()) == 2 and conv.pending == []


def test_undo_retry_and_snapshots(runner):
    conv = Conversation()
    with pytest.raises(InputError, match="nothing to undo"):
        conv.undo()
    with pytest.raises(InputError, match="nothing to retry"):
        conv.retry()
    conv.user_turn("one")
    conv.add_answer("first")
    conv.user_turn("two")
    conv.add_answer("second")
    snap = conv.snapshot()
    assert conv.retry() == {"role": "assistant", "content": "second"}
    assert conv.messages[-1] == {"role": "user", "content": "two"}
    assert conv.retry() is None  # an unanswered question is retried as it is
    conv.restore(snap)
    assert [m["content"] for m in conv.undo()] == ["two", "second"]
    assert [m["content"] for m in conv.messages] == ["one", "first"]
    assert conv.last_answer() == "first"


def test_interrupted_answer_keeps_its_text_for_the_model_and_its_mark_in_the_file(tmp_path):
    conv = Conversation()
    conv.user_turn("tell me")
    conv.add_answer("once upon", interrupted=True)
    assert conv.to_model()[-1] == {"role": "assistant", "content": "once upon"}
    path = files.save(conv, tmp_path / "c.json")
    again = files.load(path)
    assert again.messages[-1].get("interrupted") is True
    assert json.loads(path.read_text())["messages"][-1] == {"role": "assistant", "content": "once upon"}


def test_save_load_round_trip_embedded_and_by_reference(runner, png, tmp_path):
    conv = Conversation("sys")
    conv.attach(runner, str(png))
    conv.user_turn("look")
    conv.add_answer("a picture")
    conv.user_turn("more?")
    conv.add_answer("no")

    embedded = json.loads(files.save(conv, tmp_path / "e.json").read_text())
    url = embedded["messages"][1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    loaded = files.load(tmp_path / "e.json")
    assert loaded.system == "sys" and len(loaded.messages) == 4
    # the embedded picture is the same picture: the model sees the same pixels
    assert runner.chat(loaded.to_model()).content == runner.chat(conv.to_model()).content

    files.save(conv, tmp_path / "r.json", ref=True)
    by_ref = files.load(tmp_path / "r.json")
    assert by_ref.to_model() == conv.to_model()
    png.unlink()
    with pytest.raises(SourceError, match="save with --ref"):
        files.save(conv, tmp_path / "e.json")
    assert files.load(tmp_path / "e.json").to_model() == loaded.to_model()  # old file intact


def test_load_accepts_a_bare_message_list_and_rejects_bad_files(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"role": "user", "content": "hi"}]))
    assert files.load(tmp_path / "list.json").messages == [{"role": "user", "content": "hi"}]
    (tmp_path / "bad.json").write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}))
    with pytest.raises(InputError, match=r"bad.json: messages\[0\]: role must be one of"):
        files.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match="is not a JSON conversation"):
        files.load(tmp_path / "junk.json")
    with pytest.raises(InputError, match="file not found"):
        files.load(tmp_path / "nope.json")


def test_atomic_save_leaves_no_temp_file_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "chat.json"
    conv = Conversation()
    conv.user_turn("first version")
    files.save(conv, path)
    os.chmod(path, 0o640)
    before = path.read_text()
    conv.add_answer("grown")
    files.save(conv, path)
    assert os.listdir(tmp_path) == ["chat.json"]
    assert path.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its permissions
    after = path.read_text()
    assert after != before

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    conv.user_turn("never written")
    with pytest.raises(DiskFull, match="no space left on the device to write .*chat.json: .*old file is unchanged"):
        files.save(conv, path)  # a full disk is a runtime failure (exit 1), not the user's bad input
    assert os.listdir(tmp_path) == ["chat.json"]  # the temp file is gone
    assert path.read_text() == after  # and the old file is whole

    with pytest.raises(InputError, match="cannot save to"):
        files.save(conv, tmp_path / "no-such-dir" / "c.json")


def _turns(conv: Conversation, n: int, size: int = 10) -> None:
    for i in range(n):
        conv.user_turn(f"q{i}".ljust(size, "."))
        conv.add_answer(f"a{i}".ljust(size, "."))


def test_context_trimming_drops_oldest_turns_but_keeps_system_and_current_turn():
    conv = Conversation("system")
    _turns(conv, 3)
    conv.user_turn("now".ljust(10, "."))
    count = lambda messages: sum(len(m["content"]) for m in messages)  # noqa: E731
    assert count(conv.to_model()) == 6 + 70
    dropped = conv.fit(count, limit=50)
    assert [m["content"][:2] for m in dropped] == ["q0", "a0", "q1", "a1"]
    assert [m["content"][:2] for m in conv.to_model()] == ["sy", "q2", "a2", "no"]
    assert len(conv.messages) == 7  # still all there for /save: only the model's window moved
    # even when nothing fits, the current question stays
    assert [m["content"][:2] for m in conv.fit(count, limit=1)] == ["q2", "a2"]
    assert [m["content"][:2] for m in conv.to_model()] == ["sy", "no"]
    assert conv.fit(count, limit=1) == [] and conv.drop_oldest() == []
    conv.undo()
    assert conv.first == len(conv.messages)


def test_cheap_fit_check_only_trusts_known_usage_and_plain_text(runner, png):
    conv = Conversation()
    conv.user_turn("hello")
    assert not conv.surely_fits(10_000)  # nothing measured yet
    conv.add_answer("hi", used=100)
    conv.user_turn("x" * 50)
    assert conv.surely_fits(100 + 50 + 2 * conv_mod.TURN_OVERHEAD)
    assert not conv.surely_fits(100 + 49 + 2 * conv_mod.TURN_OVERHEAD)
    conv.retry()
    conv.attach(runner, str(png))
    conv.user_turn("and this?")
    assert not conv.surely_fits(10_000)  # new media: only the engine can count it


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
