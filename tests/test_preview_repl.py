"""Previews where the user meets them: the REPL after /attach and /show, and `ask --preview`,
on a FakeEngine with a scripted terminal (real terminals: test_preview_terminals.py)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console
from typer.testing import CliRunner

from mmchat.chat.loop import run_chat
from mmchat.cli import app
from mmchat.env import Environment, use
from mmchat.options import DisplayOptions, GenerationOptions
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.helpers import Scripted
from tests.support.mediafiles import halves_png, tone_wav
from tests.support.videofiles import write_video

CTRL_D = "\x04"
RED, BLUE = (255, 0, 0), (0, 0, 255)
# a terminal that answers DA1 without sixel and draws 24-bit colour: half-blocks (xterm's plain reply)
PLAIN = b"\x1bP>|XTerm(379)\x1b\\\x1b[?64;1;2;6;9;15;16;17;18;21;22;28c"
TRUECOLOR = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}


@pytest.fixture
def halves(tmp_path):
    return halves_png(tmp_path / "halves.png")


def repl(
    tmp_path: Path,
    *lines: str,
    engine: FakeEngine | None = None,
    environ=None,
    terminal: bool = True,
    display: DisplayOptions | None = None,
    runner: Runner | None = None,
) -> str:
    """Type `lines` into the REPL on a terminal that answers like xterm; what the user saw."""
    buf = io.StringIO()
    environ = dict(TRUECOLOR if environ is None else environ)
    env = Environment(
        stdout=buf,
        stdout_isatty=terminal,
        stdin_isatty=True,
        environ=environ,
        terminal=Scripted(PLAIN, environ, size=(100, 40, 0, 0)),
    )
    console = Console(file=buf, width=100, force_terminal=terminal, highlight=False, no_color="NO_COLOR" in environ)
    runner = runner or Runner(engine=engine or FakeEngine())
    with create_pipe_input() as inp:
        inp.send_text("".join(line + "\r" for line in lines) + CTRL_D)
        run_chat(
            lambda name: runner,
            model_name="m",
            options=GenerationOptions(),
            history_path=tmp_path / "history",
            input=inp,
            output=DummyOutput(),
            console=console,
            env=env,
            display=display,
        )
    return buf.getvalue()


_SGR_CELL = re.compile(r"(?:\x1b\[38;2;(\d+);(\d+);(\d+);48;2;(\d+);(\d+);(\d+)m)?▀")


def half_block_rows(text: str) -> list[list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Each line of half-blocks as its cells' (top colour, bottom colour)."""
    rows = []
    for line in text.splitlines():
        if "▀" not in line:
            continue
        cells, colours = [], None
        for m in _SGR_CELL.finditer(line):
            if m.group(1) is not None:
                values = tuple(int(v) for v in m.groups())
                colours = (values[:3], values[3:])
            cells.append(colours)
        rows.append(cells)
    return rows


def test_attach_draws_the_image_as_half_blocks_with_its_caption(tmp_path, halves):
    out = repl(tmp_path, f"/attach {halves}")
    rows = half_block_rows(out)
    assert len(rows) == 12  # about 12 text rows by default
    for cells in rows:  # red on the left, blue on the right, as in the image
        half = len(cells) // 2
        assert set(cells[:half]) == {(RED, RED)} and set(cells[half:]) == {(BLUE, BLUE)}
    assert "1. halves.png · 64×32 px · 1 token · to encode" in out
    assert out.index("attached image") < out.index("▀") < out.index("1. halves.png")


def test_the_cost_comes_from_the_encode_that_started_first_and_says_when_it_is_cached(tmp_path, halves):
    order = []

    class Watched(FakeEngine):
        def prepare(self, media, report=None, should_stop=None, on_plan=None):
            def planned(costs):
                order.append("encode planned")
                on_plan(costs)

            return super().prepare(media, report, should_stop, planned)

    class Drawn(io.StringIO):
        def write(self, s):
            if "▀" in s and "preview drawn" not in order:
                order.append("preview drawn")
            return super().write(s)

    fake = Watched()
    buf = Drawn()
    env = Environment(
        stdout=buf, stdout_isatty=True, stdin_isatty=True, environ=TRUECOLOR, terminal=Scripted(PLAIN, TRUECOLOR)
    )
    with create_pipe_input() as inp:
        inp.send_text(f"/attach {halves}\r/attach {halves}\r" + CTRL_D)
        run_chat(
            lambda name: Runner(engine=fake),
            model_name="m",
            history_path=tmp_path / "h",
            input=inp,
            output=DummyOutput(),
            console=Console(file=buf, width=100, force_terminal=True),
            env=env,
        )
    assert order[:2] == ["encode planned", "preview drawn"]  # the preview never holds the encode back
    out = buf.getvalue()
    assert "1. halves.png · 64×32 px · 1 token · to encode" in out
    assert "2. halves.png · 64×32 px · 1 token · from the cache" in out  # the first one's encoding is kept


def test_show_draws_an_attachment_again_and_then_the_last_messages(tmp_path, halves):
    out = repl(tmp_path, f"/attach {halves}", "/show 1", "/show 3", "What is it?", "/show")
    assert out.count("1. halves.png · 64×32 px") == 2
    assert "no attachment 3: 1 to 1; /attachments lists them" in out
    after = out.split("What is it?")[-1] if "What is it?" in out else out.split("[image 64x32")[-1]
    assert "halves.png · 64×32 px · 1 token · from the cache" in after  # sent already: no number, encoded
    assert len(half_block_rows(out)) == 36


def test_no_preview_and_no_terminal_draw_nothing(tmp_path, halves):
    off = repl(tmp_path, f"/attach {halves}", "/show", display=DisplayOptions(preview=False))
    assert "▀" not in off and "64×32 px" not in off and "attached image" in off
    assert "previews are off here" in off
    piped = repl(tmp_path, f"/attach {halves}", terminal=False)
    assert "\x1b" not in piped and "64×32 px" not in piped


def test_no_color_keeps_the_caption_line_only(tmp_path, halves):
    out = repl(tmp_path, f"/attach {halves}", environ={**TRUECOLOR, "NO_COLOR": "1"})
    assert "▀" not in out and "\x1b[38;2" not in out
    assert "1. halves.png · 64×32 px · 1 token · to encode" in out


def test_a_preview_that_fails_costs_nothing_but_one_line(tmp_path, halves, monkeypatch):
    from mmchat.preview import Previewer

    def broken(self, *a, **k):
        raise RuntimeError("no pixels today")

    monkeypatch.setattr(Previewer, "show", broken)
    out = repl(tmp_path, f"/attach {halves}", "/attachments")
    assert "no preview of" in out and "no pixels today" in out
    assert "1. image" in out  # still attached


# -- ask --preview ------------------------------------------------------------------------------------


def ask(*args: str, stderr_tty: bool = True, environ=None):
    environ = dict(TRUECOLOR if environ is None else environ)
    env = Environment(
        engine=FakeEngine(),
        stdin_isatty=True,
        stdout_isatty=False,
        stderr_isatty=stderr_tty,
        environ=environ,
        terminal=Scripted(PLAIN, environ),
    )
    with use(env):
        return CliRunner().invoke(app, ["ask", *args])


def test_ask_preview_goes_to_stderr_and_never_to_stdout(halves):
    result = ask("what is it", "-i", str(halves), "--preview")
    assert result.exit_code == 0, result.output
    assert len(half_block_rows(result.stderr)) == 12
    assert "halves.png · 64×32 px · 1 token · to encode" in result.stderr
    assert "\x1b" not in result.stdout and result.stdout.startswith("[image 64x32")


def test_ask_previews_only_when_asked_on_a_terminal_and_never_with_json(halves):
    assert "\x1b" not in ask("hi", "-i", str(halves)).stderr  # not asked for
    assert "\x1b" not in ask("hi", "-i", str(halves), "--preview", stderr_tty=False).stderr  # stderr is a pipe
    result = ask("hi", "-i", str(halves), "--preview", "--json")
    assert result.exit_code == 0 and "\x1b" not in result.stdout + result.stderr and "64×32" not in result.stderr


def test_preview_in_config_toml_and_no_preview_over_it(halves, isolated_user_dir):
    (isolated_user_dir / "config.toml").write_text("[defaults]\npreview = true\n")
    from mmchat import config

    defaults = config.load_user_defaults()
    env = Environment(
        engine=FakeEngine(),
        stdin_isatty=True,
        stderr_isatty=True,
        environ=TRUECOLOR,
        terminal=Scripted(PLAIN, TRUECOLOR),
    )
    with use(env):
        on = CliRunner().invoke(app, ["ask", "hi", "-i", str(halves)], default_map={"ask": defaults})
        off = CliRunner().invoke(app, ["ask", "hi", "-i", str(halves), "--no-preview"], default_map={"ask": defaults})
    assert "64×32 px" in on.stderr and "▀" in on.stderr
    assert "\x1b" not in off.stderr


def test_ask_preview_of_a_sound_marks_the_part_that_is_sent(tmp_path):
    wav = tone_wav(tmp_path / "talk.wav", seconds=4.0)
    result = ask("what is said", "-a", str(wav), "--start", "1", "--end", "3", "--preview")
    assert result.exit_code == 0, result.output
    assert "talk.wav · 0:01–0:03 of 0:04 at 16 kHz · 1 token · to encode" in result.stderr
    wave = next(line for line in result.stderr.splitlines() if "▁" in line or "█" in line)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", wave)
    marked = re.search(r"\x1b\[36m([^\x1b]*)", wave).group(1)  # the sent part, in colour
    assert plain.startswith("·") and plain.endswith("·") and set(marked) <= set("▁▂▃▄▅▆▇█")
    assert abs(len(marked) - len(plain) / 2) <= 1  # two of its four seconds


def test_ask_preview_of_a_video_is_a_contact_sheet_with_stamps(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", seconds=4.0, size=(64, 48))
    result = ask("what happens", "--video", str(clip), "--fps", "1", "--preview")
    assert result.exit_code == 0, result.output
    assert re.search(r"clip\.mp4 · 4 frames of 64×48 px, 00:00–00:03 · 4 tokens · to encode", result.stderr)
    stamps = [line for line in result.stderr.splitlines() if "00:00" in line and "clip.mp4" not in line]
    assert stamps and all(s in stamps[0] for s in ("00:00", "00:01", "00:02", "00:03"))


# -- mmchat logs ----------------------------------------------------------------------------------------


def logs(*args: str, stdout_tty: bool = True):
    env = Environment(
        engine=FakeEngine(),
        stdin_isatty=True,
        stdout_isatty=stdout_tty,
        environ=TRUECOLOR,
        terminal=Scripted(PLAIN, TRUECOLOR),
    )
    with use(env):
        return CliRunner().invoke(app, ["logs", *args])


def test_logs_give_each_medium_a_caption_and_with_preview_a_thumbnail(halves):
    assert ask("what is it", "-i", str(halves), stderr_tty=False).exit_code == 0
    listing = logs(stdout_tty=False)
    assert f"image: {halves.resolve()} (sha256 " in listing.stdout and " · halves.png" in listing.stdout
    assert "\x1b" not in listing.stdout
    drawn = logs("--preview")
    rows = half_block_rows(drawn.stdout)
    assert len(rows) == 6 and all(set(r[: len(r) // 2]) == {(RED, RED)} for r in rows)  # a thumbnail: 6 rows
    assert "halves.png · 64×32 px · cost not logged" in drawn.stdout
    assert "\x1b" not in logs("--preview", stdout_tty=False).stdout  # never in a pipe
    halves.write_bytes(halves.read_bytes() + b"changed")
    changed = logs("--preview")
    assert "(not drawn: the file is gone or changed since)" in changed.stdout and "▀" not in changed.stdout


def test_a_logged_mediums_cost_is_what_its_turn_added():
    from mmchat.cli.logs import _new_tokens
    from mmchat.log.media import MediaRecord

    one = [MediaRecord("image", "/a.png", "path", None)]
    two = one + [MediaRecord("image", "/b.png", "path", None)]
    usage = {"prompt_tokens_details": {"image_tokens": 300}}
    assert _new_tokens("image", one, usage, {"prompt_tokens_details": {"image_tokens": 44}}) == 256
    assert _new_tokens("image", one, usage, {}) == 300
    assert _new_tokens("image", two, usage, {}) is None  # two new images: which cost what is not logged


def test_ask_continue_previews_only_the_new_messages_media(halves, tmp_path):
    first = ask("what is it", "-i", str(halves), "--preview")
    assert first.exit_code == 0 and "halves.png · 64×32 px" in first.stderr
    other = halves_png(tmp_path / "other.png", left=BLUE, right=RED)
    again = ask("--continue", "and this one?", "-i", str(other), "--preview")
    assert again.exit_code == 0, again.output
    assert "other.png · 64×32 px" in again.stderr and "halves.png" not in again.stderr
