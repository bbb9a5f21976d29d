"""clipboard: and screen: against a real X server (Xvfb) and xclip: what is read, where it is
kept, who may read it, and every refusal in one line."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from mmchat import MediaPolicy
from mmchat.errors import MediaRefused, SourceError
from mmchat.media import Image
from mmchat.messages import image_part, user_message
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.desktop import copy_to_clipboard, draw_on_root, need_x, xvfb
from tests.support.helpers import model_args, run_mmchat

pytestmark = pytest.mark.model  # every test here loads a tiny GGUF or starts a process (Xvfb, mmchat)

WIDTH, HEIGHT = 320, 200
KNOWN = np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # the whole screen


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def desktop(monkeypatch):
    need_x()
    with xvfb(WIDTH, HEIGHT) as display:
        draw_on_root(display, KNOWN)
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        yield display


def _ask(runner: Runner, url: str) -> str:
    return runner.chat([user_message("what?", [image_part(url)])], max_tokens=100).content


def test_screen_is_what_the_x_server_shows(desktop):
    answer = _ask(Runner(engine=FakeEngine(), devices=True), "screen:")
    assert f"[image {WIDTH}x{HEIGHT} {Image(KNOWN).digest()[:8]}]" in answer
    assert _ask(Runner(engine=FakeEngine(), policy=MediaPolicy(devices=True)), "screen:1").startswith(
        f"[image {WIDTH}x{HEIGHT} "
    )


def test_the_clipboard_image_is_read(desktop):
    picture = KNOWN[:40, :60].copy()
    copy_to_clipboard(desktop, _png(picture), "image/png")
    assert f"[image 60x40 {Image(picture).digest()[:8]}]" in _ask(
        Runner(engine=FakeEngine(), devices=True), "clipboard:"
    )


@pytest.mark.parametrize(
    "runner",
    [lambda: Runner(engine=FakeEngine()), lambda: Runner(engine=FakeEngine(), policy=MediaPolicy(local_files=True))],
)
@pytest.mark.parametrize("url", ["clipboard:", "screen:", "screen:2"])
def test_a_runner_refuses_devices_unless_allowed(desktop, runner, url):
    with pytest.raises(MediaRefused, match=r"devices=True"):
        _ask(runner(), url)


@pytest.mark.parametrize(
    "content, mime, words",
    [
        (b"just words", "UTF8_STRING", "holds text, not an image"),
        (None, None, "clipboard is empty"),
    ],
)
def test_a_clipboard_without_an_image_is_refused(desktop, content, mime, words):
    if content is not None:
        copy_to_clipboard(desktop, content, mime)
    with pytest.raises(SourceError, match=words):
        _ask(Runner(engine=FakeEngine(), devices=True), "clipboard:")


def test_a_missing_monitor_is_refused(desktop):
    with pytest.raises(SourceError, match="choose screen:1 to screen:1"):
        _ask(Runner(engine=FakeEngine(), devices=True), "screen:3")


def test_files_copied_in_a_file_manager_are_pasted_as_those_files(desktop, tmp_path):
    from rich.console import Console

    from mmchat.chat.commands import Paste, Screenshot
    from mmchat.chat.conversation import Conversation
    from mmchat.chat.session import Chat

    photo = tmp_path / "a photo.png"
    photo.write_bytes(_png(KNOWN[:10, :10]))
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk")
    copy_to_clipboard(
        desktop, f"file://{photo.as_posix().replace(' ', '%20')}\r\nfile://{notes}\r\n".encode(), "text/uri-list"
    )
    runner = Runner(engine=FakeEngine())
    quiet = Console(file=io.StringIO())
    chat = Chat(runner, lambda name: runner, "fake", runner.generation, Conversation(), quiet, quiet)
    chat.safely(Paste())
    chat.safely(Screenshot())
    assert [a.url for a in chat.conv.pending[:2]] == [str(photo), str(notes)]
    shot = chat.conv.pending[2].url
    assert shot.startswith(os.environ["MMCHAT_HOME"]) and shot.endswith(".png")
    chat.stop_background()


# -- as a user runs it, on the generated models -------------------------------------------


def _vision(models) -> list[str]:
    return model_args(models)


def test_ask_keeps_the_screenshot_and_the_log_names_it(models, desktop, tmp_path):
    from PIL import Image as PILImage

    out = run_mmchat("ask", *_vision(models), "-i", "screen:", "What is on the screen?")
    assert out.returncode == 0, out.stderr.decode()
    kept = sorted((Path(os.environ["MMCHAT_HOME"]) / "captures").glob("screen-*.png"))
    assert len(kept) == 1 and (np.asarray(PILImage.open(kept[0]).convert("RGB")) == KNOWN).all()
    shown = run_mmchat("logs", "--json")
    assert str(kept[0]) in shown.stdout.decode()
    again = run_mmchat("ask", *_vision(models), "--continue", "And now?")  # the kept file, checked by its sha256
    assert again.returncode == 0, again.stderr.decode()


@pytest.mark.parametrize(
    "setup, env, code, words",
    [
        (lambda d: copy_to_clipboard(d, b"hello", "UTF8_STRING"), {}, 2, "holds text, not an image"),
        (lambda d: None, {"DISPLAY": "", "WAYLAND_DISPLAY": ""}, 2, "no display"),
        (lambda d: None, {"PATH": "/nonexistent"}, 1, "needs xclip"),
    ],
)
def test_ask_refuses_in_one_line(models, desktop, setup, env, code, words):
    setup(desktop)
    out = run_mmchat("ask", *_vision(models), "-i", "clipboard:", "what?", env=env)
    stderr = out.stderr.decode().strip()
    assert out.returncode == code and words in stderr and "\n" not in stderr and out.stdout == b""


def test_chat_takes_a_screenshot_and_keeps_the_conversation_after_a_refusal(models, desktop):
    lines = b"/paste\n/screenshot 4\n/screenshot\nWhat is this?\n"
    out = run_mmchat("chat", *_vision(models), stdin=lines)
    stderr = out.stderr.decode()
    assert out.returncode == 0, stderr
    assert "clipboard is empty" in stderr and "choose screen:1 to screen:1" in stderr
    assert "attached image" in stderr and out.stdout.strip()
