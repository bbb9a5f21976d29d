"""Output modes and progress: what reaches stdout and stderr."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from mmchat.render import Output, StderrProgress, stderr_progress
from tests.support.helpers import run_mmchat


def test_plain_output_streams_and_ends_with_one_newline():
    buf = io.StringIO()
    text = Output(file=buf).stream(iter(["Hello", ", ", "world"]))
    assert text == "Hello, world" and buf.getvalue() == "Hello, world\n"


def test_json_mode_prints_nothing_while_streaming():
    buf = io.StringIO()
    out = Output(json_mode=True, file=buf)
    assert out.stream(iter(["a", "b"])) == "ab" and buf.getvalue() == ""
    out.json({"x": 1})
    assert buf.getvalue() == '{"x": 1}\n'


def test_markdown_mode_renders_the_markup():
    buf = io.StringIO()
    Output(markdown=True, file=buf).stream(iter(["# Title\n", "some `code` and **bold**"]))
    shown = buf.getvalue()
    assert "Title" in shown and "# Title" not in shown and "**" not in shown and "some code and bold" in shown


def test_a_slow_step_shows_a_bar_then_clears_it_and_a_quick_one_never_shows():
    buf = io.StringIO()
    progress = StderrProgress(Console(file=buf, force_terminal=True, width=80))
    progress.SHOW_AFTER = 0.05
    progress("quick step", 1, 1)
    progress("encoding image 1 of 1", 0, 1)
    time.sleep(0.3)
    progress("encoding image 1 of 1", 1, 1)
    progress.close()
    shown = buf.getvalue()
    assert "encoding image 1 of 1" in shown and "quick step" not in shown


def test_no_bar_when_stderr_is_not_a_terminal_or_quiet():
    assert stderr_progress(Console(file=io.StringIO()), quiet=False) is None
    assert stderr_progress(Console(file=io.StringIO(), force_terminal=True), quiet=True) is None


@pytest.mark.model
def test_doctor_names_versions_backends_and_paths(tmp_path):
    hf = tmp_path / "hf"  # an empty model cache of its own: HF_HUB_CACHE (which wins over HF_HOME) set to match
    env = {"MMCHAT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub")}
    out = run_mmchat("doctor", env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    stdout = out.stdout.decode()
    for needle in (
        "llama-cpp-python 0.3.36",
        "llama.cpp backends: CPU",
        "GPU offload:",
        str(tmp_path),
        "downloaded models: none",
    ):
        assert needle in stdout
