"""The REPL's input language, parsed without a terminal."""

from __future__ import annotations

import typing

import pytest

from mmchat.chat import commands as c
from mmchat.chat.commands import ParseError, parse
from mmchat.errors import InputError


def test_plain_text_is_a_message_and_blank_lines_are_nothing():
    assert parse("What is in the picture?") == c.Say("What is in the picture?")
    assert parse("  two\nlines  ") == c.Say("two\nlines")
    assert parse("   ") is None and parse("") is None
    assert parse("//etc/hosts is a file") == c.Say("/etc/hosts is a file")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("/attach a.png", c.Attach(("a.png",))),
        (
            "/attach a.png 'my photo.jpg' b\\ c.wav https://x.org/y.png",
            c.Attach(("a.png", "my photo.jpg", "b c.wav", "https://x.org/y.png")),
        ),
        ("/image x.webp", c.Attach(("x.webp",), "image")),
        ("/audio talk.mp3 more.flac", c.Attach(("talk.mp3", "more.flac"), "audio")),
        ("/video clip.mp4", c.Attach(("clip.mp4",), "video")),
        ("/attachments", c.ListAttachments()),
        ("/rec", c.Rec()),
        ("/rec 10", c.Rec(10.0)),
        ("/rec 2.5s", c.Rec(2.5)),
        ("/detach", c.Detach()),
        ("/detach 2", c.Detach(2)),
        ("/system You are terse.", c.System("You are terse.")),
        ("/system\nYou are\nterse.", c.System("You are\nterse.")),
        ("/system", c.System()),
        ("/system --clear", c.System("")),
        ("/set", c.Set()),
        ("/set temperature 0", c.Set("temperature", 0.0)),
        ("/set max-tokens 64", c.Set("max_tokens", 64)),
        ("/set seed -1", c.Set("seed", -1)),
        ("/set top_p 0.9", c.Set("top_p", 0.9)),
        ("/set stop '###' User:", c.Set("stop", ("###", "User:"))),
        ("/set stop none", c.Set("stop", ())),
        ("/model qwen3-vl-4b", c.Model("qwen3-vl-4b")),
        ("/save chat.json", c.Save("chat.json")),
        ("/save --ref 'my chat.json'", c.Save("my chat.json", ref=True)),
        ("/load chat.json", c.Load("chat.json")),
        ("/clear", c.Clear()),
        ("/retry", c.Retry()),
        ("/undo", c.Undo()),
        ("/copy", c.Copy()),
        ("/stats", c.Stats()),
        ("/help", c.Help()),
        ("/exit", c.Exit()),
        ("/quit", c.Exit()),
        ("/EXIT", c.Exit()),
    ],
)
def test_commands(line, expected):
    assert parse(line) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("/atach a.png", "unknown command /atach: did you mean /attach?"),
        ("/qiut", "did you mean /quit?"),
        ("/frobnicate", "unknown command /frobnicate: /help lists the commands"),
        ("/attach", "/attach needs at least one path or URL"),
        ("/attach -", "cannot read standard input"),
        ("/attach 'unclosed.png", "close the quote"),
        ("/detach zero", "/detach takes the number of an attachment"),
        ("/detach 0", "/detach takes the number"),
        ("/set tempreature 1", "unknown setting tempreature: did you mean temperature?"),
        ("/set temperature", "/set temperature needs a value, e.g. /set temperature 0.7"),
        ("/set temperature hot", "'hot' is not valid: give a number >= 0"),
        ("/set temperature nan", "is not valid"),
        ("/set max_tokens 0", "give a whole number >= 1"),
        ("/set max_tokens 1.5", "give a whole number >= 1"),
        ("/set top_p 1.5", "give a number from 0 to 1"),
        ("/set repeat_penalty 0", "give a number > 0"),
        ("/model", "/model needs one model name"),
        ("/save", "/save needs one file name"),
        ("/save a.json --embed", "unknown option --embed"),
        ("/load a.json b.json", "/load needs one file name"),
        ("/clear now", "/clear takes no arguments"),
        ("/rec ten", "/rec takes a length in seconds (at most 600)"),
        ("/rec 0", "/rec takes a length in seconds"),
        ("/rec 601", "at most 600"),
    ],
)
def test_errors_are_one_clear_line(line, message):
    with pytest.raises(ParseError) as err:
        parse(line)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, InputError)  # the REPL prints every MmchatError as one line


def test_a_line_that_is_only_existing_files_attaches_them(tmp_path):
    a = tmp_path / "my photo.png"
    b = tmp_path / "b.wav"
    for f in (a, b):
        f.write_bytes(b"x")
    assert parse(str(a)) == c.Attach((str(a),))  # unquoted, with a space
    assert parse(f"'{a}'") == c.Attach((str(a),))  # quoted, as terminals paste a dropped file
    assert parse(str(a).replace(" ", "\\ ")) == c.Attach((str(a),))  # backslash-escaped
    assert parse(f"'{a}' {b}") == c.Attach((str(a), str(b)))  # several dropped at once
    assert parse(f"file://{b}") == c.Attach((f"file://{b}",))


def test_text_that_mentions_files_stays_text(tmp_path, monkeypatch):
    f = tmp_path / "notes"
    f.write_text("x")
    monkeypatch.chdir(tmp_path)
    assert parse("notes") == c.Say("notes")  # a bare word is a question even if ./notes exists
    assert parse(f"summarize {f}") == c.Say(f"summarize {f}")
    with pytest.raises(ParseError, match="is a file, not a command: /attach it, or start the line with //"):
        parse(f"{f} says hello")
    with pytest.raises(ParseError, match="file not found: /no/such/file.png"):
        parse("/no/such/file.png")  # not a file: read as a mistyped command, never sent to the model


#: an argument for each usage pattern /help shows
SAMPLE_ARGS = {
    "PATH|URL...": "a.png",
    "[N]": "2",
    "[TEXT]": "Be brief.",
    "[NAME VALUE]": "top_k 5",
    "NAME": "qwen",
    "FILE [--ref]": "c.json --ref",
    "FILE": "c.json",
    "[SECONDS]": "10",
    "": "",
}


def test_help_lists_every_command_and_each_usage_it_shows_parses():
    kinds = set()
    for line in c.help_lines():
        name, usage = line.split()[0], c.COMMANDS[line.split()[0]][0]
        assert line.startswith(f"{name} {usage}".rstrip()) and "\n" not in line
        kinds.add(type(parse(f"{name} {SAMPLE_ARGS[usage]}".rstrip(), is_file=lambda _: False)))
    assert kinds == set(typing.get_args(c.Command)) - {c.Say}  # every command can be found in /help
    assert all(name in c.COMMANDS for name in c.PATH_COMMANDS)


def test_set_changes_exactly_the_settable_generation_options():
    from mmchat.options import GenerationOptions

    for name in c.SETTING_NAMES:
        assert name in GenerationOptions.names()
        command = parse(f"/set {name} 1")
        assert command.name == name and GenerationOptions().replace(**{name: command.value})
