"""The command line through typer's CliRunner on a FakeEngine: milliseconds per case.

The subprocess tests (test_cli_ask.py, test_cli_scripts.py) prove the real path on the tiny
models; these cover what the flags, the options and the error edge do, case by case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmchat.testing import FakeEngine
from tests.support.helpers import Interrupting, invoke
from tests.support.mediafiles import noise_png, tone_wav

ROOT = Path(__file__).resolve().parent.parent


class InterruptedWhileLoading(FakeEngine):
    def capabilities(self):  # the Runner asks while it loads
        raise KeyboardInterrupt


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "p.png", size=(40, 30))


def test_the_answer_alone_on_stdout_and_every_flag_reaches_the_engine(png):
    result, fake = invoke(
        "ask",
        "what is it",
        "-i",
        str(png),
        "-t",
        "0",
        "-n",
        "7",
        "--top-k",
        "3",
        "--top-p",
        "0.5",
        "--min-p",
        "0.1",
        "--repeat-penalty",
        "1.2",
        "--seed",
        "9",
        "--stop",
        "END",
        "--stop",
        "###",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("[image 40x30 ") and result.stdout.endswith("what is it\n")
    assert result.stderr == ""
    options = fake.calls[0][1]
    assert (options.temperature, options.max_tokens, options.top_k, options.top_p, options.min_p) == (0, 7, 3, 0.5, 0.1)
    assert (options.repeat_penalty, options.seed, options.stop) == (1.2, 9, ("END", "###"))


@pytest.mark.parametrize(
    "args, words",
    [
        (["--top-p", "7"], "--top-p 7.0 is not valid: give a number from 0 to 1 (1 is off)"),
        (["--temperature", "-1"], "--temperature -1.0 is not valid: give a number >= 0"),
        (["-n", "0"], "--max-tokens 0 is not valid: give a whole number >= 1"),
        (["--seed", "-5"], "--seed -5 is not valid"),
        (["--ctx-size", "0"], "--ctx-size 0 is not valid"),
        (["--fps", "0"], "--fps 0.0 is not valid: give a number > 0"),
        (["--schema", "{}", "--grammar", "g.gbnf"], "--schema and --grammar both constrain the answer"),
        (["--schema", "{not json"], "the schema is not valid JSON"),
    ],
)
def test_out_of_range_options_are_one_line_and_exit_2_as_in_the_repl(args, words):
    result, fake = invoke("ask", "hi", *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mmchat: error: ") and words in result.stderr
    assert result.stdout == "" and fake.calls == []


def test_media_keep_their_command_line_order_across_kinds(png, tmp_path):
    wav = tone_wav(tmp_path / "t.wav")
    result, fake = invoke("ask", "which first", "-a", str(wav), "-i", str(png))
    assert result.exit_code == 0, result.output
    kinds = [type(s).__name__ for s in fake.calls[0][0][-1].segments]
    assert kinds == ["Audio", "Image", "str"]


def test_piped_text_is_added_after_the_prompt():
    result, fake = invoke("ask", "Summarize.", input="notes of the meeting\n")
    assert fake.calls[0][0][-1].segments == ("Summarize.\n\nnotes of the meeting\n",)
    assert result.exit_code == 0


def test_json_is_one_completion_object(png):
    result, _ = invoke("ask", "what", "-i", str(png), "--json")
    data = json.loads(result.stdout)
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"].endswith("what")
    assert data["choices"][0]["finish_reason"] == "stop"


def test_json_interrupted_is_one_object_with_the_partial_answer():
    result, _ = invoke("ask", "count", "--json", engine=Interrupting(2, reply="one two three four"))
    assert result.exit_code == 130
    data = json.loads(result.stdout)  # one object, nothing else
    assert data["choices"][0]["message"]["content"] == "one two"
    assert data["choices"][0]["finish_reason"] == "interrupted"
    assert data["usage"]["prompt_tokens"] == 1 and data["usage"]["completion_tokens"] >= 2  # counted up to the stop


def test_no_stream_interrupted_keeps_the_partial_answer():
    result, _ = invoke("ask", "count", "--no-stream", engine=Interrupting(3, reply="one two three four"))
    assert result.exit_code == 130 and result.stdout == "one two three\n"


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_ctrl_c_while_the_model_loads_exits_130_everywhere(command):
    result, _ = invoke(command, *(["hi"] if command == "ask" else []), engine=InterruptedWhileLoading(), input="")
    assert result.exit_code == 130
    assert "Aborted" not in result.output and "Traceback" not in result.output


def test_every_command_prints_failures_in_one_format(tmp_path):
    missing = str(tmp_path / "missing.png")
    asked, _ = invoke("ask", "what", "-i", missing)
    chatted, _ = invoke("chat", input=f"/attach {missing}\nhello\n")
    assert asked.exit_code == 2 and chatted.exit_code == 0  # the REPL goes on after it
    line = f"mmchat: error: file not found: {missing}: check the path\n"
    assert asked.stderr == line and line in chatted.stderr


def test_scripted_chat_answers_on_stdout_and_set_checks_like_the_flags():
    result, fake = invoke("chat", "-t", "0", input="/set top_p 7\n/set top_k 5\nhello there\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello there\n"
    assert "mmchat: error: /set top_p: '7' is not valid: give a number from 0 to 1 (1 is off)" in result.stderr
    options = fake.calls[0][1]
    assert options.top_k == 5 and options.temperature == 0 and options.top_p == 0.95


def test_a_model_without_vision_refuses_an_image_before_reading_it(tmp_path):
    result, _ = invoke("ask", "what", "-i", str(tmp_path / "never-read.png"), engine=FakeEngine(vision=False))
    assert result.exit_code == 2 and "fake-model takes audio, not images" in result.stderr


def test_markdown_only_on_a_terminal_with_colour():
    reply = "# Title\n\nsome **bold** text"
    styled, _ = invoke("ask", "x", engine=FakeEngine(reply=reply), stdout_isatty=True)
    assert "\x1b[" in styled.stdout and "**" not in styled.stdout
    plain, _ = invoke("ask", "x", engine=FakeEngine(reply=reply), stdout_isatty=True, environ={"NO_COLOR": "1"})
    assert plain.stdout == reply + "\n"
    piped, _ = invoke("ask", "x", engine=FakeEngine(reply=reply))
    assert piped.stdout == reply + "\n"


def test_frequency_and_presence_penalties_reach_the_engine_from_flags_and_set():
    asked, fake = invoke("ask", "hi", "--frequency-penalty", "0.5", "--presence-penalty", "-0.25")
    assert asked.exit_code == 0 and (fake.calls[0][1].frequency_penalty, fake.calls[0][1].presence_penalty) == (
        0.5,
        -0.25,
    )
    chatted, fake = invoke("chat", input="/set frequency_penalty 1.5\n/set presence_penalty 9\nhello\n")
    assert fake.calls[0][1].frequency_penalty == 1.5 and fake.calls[0][1].presence_penalty == 0
    assert (
        "mmchat: error: /set presence_penalty: '9' is not valid: give a number from -2 to 2 (0 is off)"
        in chatted.stderr
    )
    refused, fake = invoke("ask", "hi", "--frequency-penalty", "3")
    assert (
        refused.exit_code == 2 and "--frequency-penalty 3.0 is not valid: give a number from -2 to 2" in refused.stderr
    )


STATS = re.compile(
    r"tokens: 2 prompt \(0 cached, 0 image, 0 audio\) \+ 3 generated; finish: stop\n"
    r"seconds: load \d+\.\d\d, media decode \d+\.\d\d, encode \d+\.\d\d, prompt \d+\.\d\d, "
    r"generation \d+\.\d\d \(\d+\.\d tokens/s\), first token \d+\.\d\d\n"
)  # /stats's words too


def test_stats_go_to_stderr_and_leave_the_answer_alone():
    plain, _ = invoke("ask", "hi there", engine=FakeEngine(reply="one two three"))
    assert plain.stdout == "one two three\n" and plain.stderr == ""
    stats, _ = invoke("ask", "hi there", "--stats", engine=FakeEngine(reply="one two three"))
    assert stats.exit_code == 0 and stats.stdout == "one two three\n"
    assert STATS.fullmatch(stats.stderr), stats.stderr
    as_json, _ = invoke("ask", "hi there", "--stats", "--json", engine=FakeEngine(reply="one two three"))
    assert json.loads(as_json.stdout)["usage"]["completion_tokens"] == 3 and STATS.fullmatch(as_json.stderr)


def test_version_is_the_packages_own():
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    result, fake = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"mmchat {version}\n" and fake.calls == []


def test_no_color_gives_plain_text_on_a_terminal_as_no_color_does():
    reply = "# Title\n\nsome **bold** text"
    styled, _ = invoke("ask", "x", "--stats", engine=FakeEngine(reply=reply), stdout_isatty=True, stderr_isatty=True)
    assert "\x1b[" in styled.stdout and "\x1b[" in styled.stderr  # the rendered Markdown and the dim stats
    plain, _ = invoke(
        "ask", "x", "--stats", "--no-color", engine=FakeEngine(reply=reply), stdout_isatty=True, stderr_isatty=True
    )
    assert plain.stdout == reply + "\n" and "\x1b[" not in plain.stderr and "generated; finish" in plain.stderr
    chatted, _ = invoke("chat", input="hello **there**\n", stdout_isatty=True)
    assert "\x1b[1mthere" in chatted.stdout  # the REPL renders the answer's Markdown on a terminal
    chatted, _ = invoke("chat", "--no-color", input="hello **there**\n", stdout_isatty=True)
    assert chatted.stdout == "hello **there**\n"
