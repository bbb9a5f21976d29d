"""Keys typed while `mmchat chat` starts reach the first prompt (issue 24): the preview's terminal
query reads the input while it waits for the terminal's answer, and must hand every key that is not
part of an answer on to the prompt, in order; an answer that comes after the wait gave up must not
appear as typed text. Checked on the pure splitting, on a pty that never answers (and one that
answers late), and in a tmux pane, which answers the query itself.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmchat.preview.detect import QUERY, LateReplies, split_typed
from mmchat.runner import Runner
from tests.support.helpers import mmchat_env, model_args
from tests.support.terminal import Pty

ROOT = Path(__file__).resolve().parent.parent
# What real terminals answer to QUERY (the recorded replies in tests/test_preview.py's terminals):
# xterm -ti vt340's DA1 and XTSMGRAPHICS, kitty's graphics OK, XTVERSION's DCS, the cell size.
XTERM_DA1 = b"\x1b[?63;1;2;4;6;9;15;16;22;28c"
KITTY_OK = b"\x1b_Gi=31;OK\x1b\\"
XTVERSION = b"\x1bP>|XTerm(379)\x1b\\"
CELL = b"\x1b[6;20;10t"
REGISTERS = b"\x1b[?1;0;1024S"


# -- the bytes ------------------------------------------------------------------------------------------


def test_keys_typed_among_the_answers_are_kept_in_order():
    data = b"Wh" + KITTY_OK + b"at is" + XTVERSION + CELL + b" it?\r" + REGISTERS + b"\x1b[A" + XTERM_DA1 + b"x"
    replies, typed = split_typed(data)
    assert typed == b"What is it?\r\x1b[Ax"  # an arrow key is a key, not an answer
    assert replies == KITTY_OK + XTVERSION + CELL + REGISTERS + XTERM_DA1


def test_a_late_answer_cut_across_reads_is_taken_out_and_keys_around_it_stay():
    late = LateReplies()
    answer = XTVERSION + XTERM_DA1
    out = b""
    for i in range(0, len(answer), 5):  # the answer arrives in pieces, between the user's keys
        out += late.feed((b"a" if i == 0 else b"") + answer[i : i + 5])
    out += late.feed(b"bc\r") + late.flush()
    assert out == b"abc\r"


def test_an_escape_held_for_a_possible_answer_is_a_key_when_nothing_follows():
    late = LateReplies()
    assert late.feed(b"hi\x1b[") == b"hi"  # could be the start of a late answer: held
    assert late.flush() == b"\x1b["  # nothing came: the prompt gets it (prompt_toolkit's own timeout)
    assert late.feed(b"\x1b[1;5A") == b"\x1b[1;5A"  # a key's sequence is never held back


# -- a real terminal --------------------------------------------------------------------------------


def _chat_args(models, tmp_path: Path) -> list[str]:
    return [
        *model_args(models, greedy=False),
        *("--temperature", "0", "--max-tokens", "8", "--ctx-size", "1024"),
    ]


def _history(tmp_path: Path) -> list[str]:
    """The entries of the REPL's history file (prompt_toolkit's format: '+' lines)."""
    path = tmp_path / "history"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line[1:] for line in lines if line.startswith("+")]


def _answer(models) -> str:
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=1024, threads=2) as r:
        return r.chat([{"role": "user", "content": "Hello there"}], temperature=0, max_tokens=8).content


@pytest.mark.model
def test_a_question_typed_while_the_model_loads_is_asked_on_a_terminal_that_never_answers(models, tmp_path):
    term = Pty(_chat_args(models, tmp_path), tmp_path)
    try:
        term.type(b"Hello there\r")  # at once: the process has not even imported mmchat yet
        assert term.until(lambda b: QUERY.encode() in b), bytes(term.seen)  # the query was asked, unanswered
        expected = _answer(models)
        assert term.until(lambda b: expected.encode() in b.partition(b"Ctrl-D leaves")[2]), bytes(term.seen)
    finally:
        assert term.close() == 0
    assert _history(tmp_path)[:1] == ["Hello there"]


@pytest.mark.model
def test_an_answer_that_comes_after_the_wait_is_not_typed_text(models, tmp_path):
    term = Pty(_chat_args(models, tmp_path), tmp_path)
    try:
        assert term.until(lambda b: QUERY.encode() in b), bytes(term.seen)
        time.sleep(1.0)  # past the query's 0.5 s wait: a slow terminal (ssh, a busy machine) answers now
        term.type(b"Hel" + XTVERSION + CELL)
        term.type(XTERM_DA1[:6])
        time.sleep(0.2)  # the answer's rest comes in another read
        term.type(XTERM_DA1[6:] + b"lo there\r")
        expected = _answer(models)
        assert term.until(lambda b: expected.encode() in b.partition(b"Ctrl-D leaves")[2]), bytes(term.seen)
    finally:
        assert term.close() == 0
    assert _history(tmp_path)[:1] == ["Hello there"]


@pytest.mark.model
def test_a_question_typed_before_the_first_prompt_in_tmux_is_answered_and_kept(models, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux: apt-get install tmux")
    socket = f"mmchat-typeahead-{os.getpid()}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    env = {**mmchat_env({"MMCHAT_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}), "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "mmchat", "chat", *_chat_args(models, tmp_path)])
    inner = ("-e", f"MMCHAT_HOME={tmp_path}", "-e", f"PYTHONPATH={ROOT}")
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "160", "-y", "40", *inner, command], env=env, check=True, cwd=ROOT
    )

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-J"], env=env, capture_output=True, text=True).stdout

    try:
        subprocess.run([*tmux, "send-keys", "-l", "Hello there"], env=env, check=True)  # before any prompt
        subprocess.run([*tmux, "send-keys", "Enter"], env=env, check=True)
        expected = _answer(models)
        deadline = time.monotonic() + 60
        while expected not in pane().partition("Ctrl-D leaves")[2] and time.monotonic() < deadline:
            time.sleep(0.3)
        screen = pane()
        assert expected in screen.partition("Ctrl-D leaves")[2], screen
        subprocess.run([*tmux, "send-keys", "/exit", "Enter"], env=env, check=True)
        deadline = time.monotonic() + 30
        while subprocess.run([*tmux, "has-session"], env=env, capture_output=True).returncode == 0:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True)
    assert _history(tmp_path)[:1] == ["Hello there"]
