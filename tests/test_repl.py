"""The chat REPL driven through a real prompt_toolkit session (pipe input), and once through a pty."""

from __future__ import annotations

import dataclasses
import faulthandler
import io
import json
import re
import threading
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from rich.console import Console

from mmchat.chat.commands import Attach, Say
from mmchat.chat.conversation import Conversation
from mmchat.chat.loop import ChatCompleter
from mmchat.chat.session import Chat
from mmchat.engine.base import Finished
from mmchat.errors import ContextOverflow, GenerationError, ModelNotFound
from mmchat.options import GenerationOptions
from mmchat.render import _Tail
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.helpers import CTRL_C, CTRL_D, Interrupting, chat, model_args
from tests.support.mediafiles import noise_png
from tests.support.terminal import Pty

ROOT = Path(__file__).resolve().parent.parent
ESC_ENTER = "\x1b\r"


@pytest.fixture(autouse=True)
def no_hang():
    """A REPL waiting for input that never comes would stall the suite: dump and exit instead."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def last_turn_text(fake: FakeEngine, call: int = -1) -> str:
    return " ".join(str(s) for s in fake.calls[call][0][-1].segments if isinstance(s, str))


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "photo one.png", seed=11)


# -- with the fake engine: the loop, the commands, the errors ------------------------------


def test_attach_ask_follow_up_detach_save_load_round_trip(tmp_path, png):
    fake = FakeEngine()
    saved, again = tmp_path / "chat.json", tmp_path / "again.json"
    code, out = chat(
        tmp_path,
        f"/attach '{png}'",
        "What is this?",
        "And the colours?",
        f"/image '{png}'",
        "/attachments",
        "/detach",
        "/attachments",
        f"/save {saved}",
        "/clear",
        f"/load {saved}",
        "One more.",
        "/undo",
        f"/save {again}",
        "/exit",
        runner=Runner(engine=fake),
    )
    assert code == 0
    assert "attached image" in out and "(1 pending)" in out
    assert re.search(r"\[image 96x64 \w+\] What is this\?", out)  # the fake answers with what it saw
    first, second = fake.calls[0][0], fake.calls[1][0]
    assert [t.role for t in second] == ["user", "assistant", "user"]
    assert second[0].segments[0].digest() == first[0].segments[0].digest() and second[0].segments[1] == "What is this?"
    assert "1. image" in out and "detached" in out and "no attachments pending" in out
    # after /load the model gets the saved conversation back, image included
    loaded = fake.calls[2][0]
    assert [t.role for t in loaded] == ["user", "assistant", "user", "assistant", "user"]
    assert loaded[0].segments[0].digest() == first[0].segments[0].digest()
    assert json.loads(saved.read_text()) == json.loads(again.read_text())  # /undo removed "One more."
    assert json.loads(saved.read_text())["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png")


def test_a_dropped_file_line_attaches_and_multiline_input_is_one_message(tmp_path, png):
    fake = FakeEngine()
    code, out = chat(
        tmp_path,
        f"'{png}'",
        "first line" + ESC_ENTER + "second line",
        "\x1b[200~pasted\nlines\x1b[201~",
        "/exit",
        runner=Runner(engine=fake),
    )
    assert code == 0 and "attached image" in out
    assert last_turn_text(fake, 0) == "first line\nsecond line"
    assert last_turn_text(fake, 1) == "pasted\nlines"
    assert "first line\nsecond line" in (tmp_path / "h" / "history").read_text().replace("+", "")


def test_history_persists_and_ctrl_r_finds_an_earlier_question(tmp_path):
    chat(tmp_path, "hello world", "something else", "/exit")
    fake = FakeEngine()
    code, out = chat(tmp_path, "\x12wor\r", "/exit", runner=Runner(engine=fake))  # Ctrl-R, type, Enter
    assert code == 0 and [last_turn_text(fake, i) for i in range(len(fake.calls))] == ["hello world"]


def test_unknown_command_and_corrupt_file_leave_the_session_usable(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    fake = FakeEngine()
    code, out = chat(
        tmp_path,
        "/atach x.png",
        f"/attach {broken} {tmp_path / 'missing.jpg'}",
        "/attachments",
        "Still there?",
        "/exit",
        runner=Runner(engine=fake),
    )
    assert code == 0
    errors = [line for line in out.splitlines() if line.startswith("mmchat: error:")]
    assert errors[0] == "mmchat: error: unknown command /atach: did you mean /attach?"
    assert "broken.png" in errors[1] and "file not found" in errors[2] and len(errors) == 3
    assert "no attachments pending" in out
    assert "Still there?" in out and len(fake.calls) == 1 and len(fake.calls[0][0][-1].segments) == 1


class Failing(FakeEngine):
    """Fails the first request after some text, then works."""

    def stream(self, turns, options):
        if not self.calls:
            self.calls.append((list(turns), options))
            yield "half an"
            raise GenerationError("llama.cpp failed while generating (code 1)")
        yield from super().stream(turns, options)


def test_a_failed_turn_is_one_line_and_rolled_back(tmp_path, png):
    fake = Failing()
    code, out = chat(
        tmp_path,
        f"/attach '{png}'",
        "Describe.",
        "/attachments",
        "Describe.",
        f"/save {tmp_path / 'c.json'}",
        "/exit",
        runner=Runner(engine=fake),
    )
    assert code == 0
    assert "error: llama.cpp failed while generating (code 1)" in out
    assert "1. image" in out  # the attachment is pending again
    messages = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]  # no dangling question


class Buggy(FakeEngine):
    def stream(self, turns, options):
        if not self.calls:
            self.calls.append((list(turns), options))
            raise RuntimeError("boom")
        yield from super().stream(turns, options)


def test_a_bug_is_one_line_and_not_the_end_of_the_session(tmp_path, monkeypatch):
    monkeypatch.delenv("MMCHAT_DEBUG", raising=False)
    fake = Buggy()
    code, out = chat(tmp_path, "one", "two", f"/save {tmp_path / 'c.json'}", "/exit", runner=Runner(engine=fake))
    assert code == 0 and "error: unexpected RuntimeError: boom (a bug: please report it" in out
    assert [m["content"] for m in json.loads((tmp_path / "c.json").read_text())["messages"]] == ["two", "two"]


def test_ctrl_c_during_an_answer_keeps_the_partial_answer(tmp_path):
    fake = Interrupting(2, reply="one two three four")
    code, out = chat(tmp_path, "Count.", f"/save {tmp_path / 'c.json'}", "/exit", runner=Runner(engine=fake))
    assert code == 0 and "one two\n[interrupted]" in out
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["messages"][-1] == {"role": "assistant", "content": "one two"}
    assert data["mmchat"]["interrupted"] == [1]


def test_ctrl_c_before_the_first_word_drops_the_turn(tmp_path, png):
    fake = Interrupting(0)
    code, out = chat(
        tmp_path,
        f"/attach '{png}'",
        "Count.",
        "/attachments",
        f"/save {tmp_path / 'c.json'}",
        "/exit",
        runner=Runner(engine=fake),
    )
    assert code == 0 and "your message was not kept" in out and "1. image" in out
    assert json.loads((tmp_path / "c.json").read_text())["messages"] == []


def test_ctrl_c_clears_a_line_and_twice_at_an_empty_prompt_leaves(tmp_path):
    fake = FakeEngine()
    code, out = chat(
        tmp_path,
        "typo" + CTRL_C,
        "hello",
        CTRL_C,
        "still here",
        CTRL_C,
        CTRL_C,
        "never sent",
        runner=Runner(engine=fake),
    )
    assert code == 0
    assert [last_turn_text(fake, i) for i in range(len(fake.calls))] == ["hello", "still here"]
    assert out.count("press Ctrl-C again or type /exit to leave") == 2


def test_ctrl_d_leaves(tmp_path):
    assert chat(tmp_path, CTRL_D, "never sent")[0] == 0


class Small(FakeEngine):
    """A context that holds 3 messages: more is a ContextOverflow, as the real engine raises it."""

    def stream(self, turns, options):
        if len(turns) > 3:
            raise ContextOverflow(f"the prompt is {len(turns)} messages but the context holds 3")
        yield from super().stream(turns, options)


def test_a_full_context_drops_the_oldest_turns_with_a_notice(tmp_path):
    fake = Small()
    code, out = chat(
        tmp_path, "one", "two", "three", f"/save {tmp_path / 'c.json'}", "/exit", runner=Runner(engine=fake)
    )
    assert code == 0 and "error" not in out
    assert out.count("context full: 2 oldest messages left the model's view") == 1
    assert [t.segments[0] for t in fake.calls[-1][0]] == ["two", "two", "three"]
    assert len(json.loads((tmp_path / "c.json").read_text())["messages"]) == 6  # /save keeps everything


def test_the_conversation_is_fitted_to_the_window_by_counting_tokens_on_any_engine(tmp_path):
    fake = FakeEngine(n_ctx=64)  # room for 56 prompt tokens once 8 are kept for the answer
    question = "word " * 20
    code, out = chat(
        tmp_path,
        question,
        question,
        question,
        "/exit",
        runner=Runner(engine=fake),
        options=GenerationOptions(max_tokens=8),
    )
    assert code == 0 and out.count("context full: 2 oldest messages left the model's view") == 1
    assert [fake.count_tokens(turns) for turns, _ in fake.calls] == [20, 48, 48]


def test_set_system_stats_and_model_switch(tmp_path):
    engines = {"a": FakeEngine(), "b": FakeEngine(audio=False)}

    def factory(name):
        if name not in engines:
            raise ModelNotFound(f"no model named {name!r}: mmchat models lists them")
        return Runner(engine=engines[name])

    code, out = chat(
        tmp_path,
        "/set temperature 0",
        "/set max_tokens 2",
        "/set stop END",
        "/set top_p 7",
        "/system Be terse.",
        "/system",
        "one two three",
        "/stats",
        "/model nope",
        "/model b",
        "again",
        "/set",
        "/exit",
        factory=factory,
        model_name="a",
    )
    assert code == 0
    options = engines["a"].calls[0][1]
    assert (options.temperature, options.max_tokens, options.stop) == (0.0, 2, ("END",))
    assert "error: /set top_p: '7' is not valid" in out and "system prompt: Be terse." in out
    assert engines["a"].calls[0][0][0].segments == ("Be terse.",)
    assert "cut at max_tokens=2" in out and "+ 2 generated; finish: length" in out
    assert "error: no model named 'nope'" in out
    turns = engines["b"].calls[0][0]
    assert [t.role for t in turns] == ["system", "user", "assistant", "user"]  # the conversation came along
    assert "max_tokens=2" in out and "stop=('END',)" in out


@pytest.mark.model
def test_copy_uses_a_clipboard_tool_or_says_there_is_none(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    code, out = chat(tmp_path, "/copy", "hello there", "/copy", "/exit", runner=Runner(engine=FakeEngine()))
    assert "error: nothing to copy yet" in out and "no clipboard tool found" in out
    tool = bin_dir / "xclip"
    tool.write_text(f"#!/bin/sh\n/bin/cat > {tmp_path / 'clip.txt'}\n")
    tool.chmod(0o755)
    code, out = chat(tmp_path, "hello there", "/copy", "/exit", runner=Runner(engine=FakeEngine()))
    assert "copied 11 characters with xclip" in out
    assert (tmp_path / "clip.txt").read_text() == "hello there"


MARKDOWNISH = "# T\n```py\nunclosed *bold [link]( <b>html</b> | a | b |\n|---|\n\\ ~~x~~ ` _y_ > q\n" + "line\n" * 30


def test_markdown_rendering_on_a_terminal_survives_any_text(tmp_path):
    fake = FakeEngine(reply=MARKDOWNISH)
    code, out = chat(tmp_path, "Go.", "/exit", runner=Runner(engine=fake), terminal=True)
    assert code == 0 and "unclosed" in out and "\x1b[" in out  # rendered with styles
    assert "error" not in out


def test_a_long_answer_streams_as_its_last_screenful():
    console = Console(file=io.StringIO(), width=40, height=8, force_terminal=True)
    console.print(_Tail("\n\n".join(f"paragraph {i}" for i in range(50))))
    lines = console.file.getvalue().splitlines()
    assert len(lines) == 6 and "paragraph 49" in lines[-1] and "paragraph 0" not in console.file.getvalue()


def test_the_toolbar_shows_model_attachments_and_context(tmp_path, png):
    runner = Runner(engine=FakeEngine(n_ctx=4096))
    state = Chat(
        runner,
        lambda n: runner,
        "/models/some-model.gguf",
        GenerationOptions(),
        Conversation(),
        Console(file=io.StringIO()),
    )
    assert state.toolbar() == " some-model.gguf │ context 0/4096"
    state.safely(Attach((str(png),)))
    state.safely(Say("hi"))
    assert state.toolbar() == f" some-model.gguf │ context {state.last.usage.total_tokens}/4096"
    state.safely(Attach((str(png), str(png))))
    assert "2 attachments pending" in state.toolbar()


def test_completion_of_commands_paths_and_settings(tmp_path, png):
    completer = ChatCompleter()

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text, len(text)), CompleteEvent())]

    assert complete("/at") == ["/attach", "/attachments"]
    assert complete("/q") == ["/quit"]
    assert complete(f"/attach {tmp_path}/pho") == ["to\\ one.png"]
    assert complete(f"/save x.json {tmp_path}/pho") == ["to\\ one.png"]
    assert complete(f"/attach {tmp_path}/photo\\ o") == ["ne.png"]
    assert complete(f"/attach '{tmp_path}/photo o") == ["ne.png"]
    assert complete("/set te") == ["temperature"]
    assert complete("hello /at") == []


@dataclasses.dataclass(frozen=True)
class Echo:
    """The value of a test-only command, /echo PATH."""

    path: str


@pytest.fixture
def echo_command():
    """/echo PATH, registered in this one place (a decorator on its handler) and gone after the test."""
    from mmchat.chat import commands as cmd

    def parse_echo(name: str, rest: str) -> Echo:
        return Echo(rest)

    @cmd.command("/echo", "PATH", "say PATH back", parse=parse_echo, paths=True)
    def do_echo(chat, c: Echo) -> None:
        chat.note(f"echo: {c.path}", style="")

    yield
    cmd.REGISTRY.remove("/echo")


def test_a_command_registered_in_one_place_is_listed_completed_and_run(tmp_path, png, echo_command):
    code, out = chat(tmp_path, "/help", f"/echo {png.name}", "/ech")
    assert code == 0
    assert re.search(r"^/echo PATH +say PATH back$", out, re.M)  # in /help, aligned with the others
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("/")]
    assert listed[:4] == ["/attach", "/image", "/audio", "/video"] and listed[-2:] == ["/exit", "/echo"]
    assert f"echo: {png.name}" in out  # parsed by its parser, run by its handler
    assert "unknown command /ech: did you mean /echo?" in out
    completer = ChatCompleter()

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text, len(text)), CompleteEvent())]

    assert complete("/ec") == ["/echo"]
    assert complete(f"/echo {tmp_path}/pho") == ["to\\ one.png"]  # its argument completes as a path


def test_the_model_failing_to_load_is_one_line_and_its_exit_code(tmp_path):
    def factory(name):
        raise ModelNotFound(f"no model named {name!r}: run mmchat models")

    code, out = chat(tmp_path, "/exit", factory=factory)
    assert code == 2 and out.strip() == "mmchat: error: no model named 'test-model': run mmchat models"


# -- on the real tiny models --------------------------------------------------------------


class Recorder:
    """Wraps the real engine: the cache counters before and after each request."""

    def __init__(self, engine):
        self.inner, self.log = engine, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stream(self, turns, options):
        before = self.inner.stats.as_dict()
        for event in self.inner.stream(turns, options):
            if isinstance(event, Finished):
                self.log.append((before, self.inner.stats.as_dict(), event.usage))
            yield event


def test_follow_up_reuses_the_cache_and_equals_a_fresh_runner(models, tmp_path, png):
    runner = Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=2)
    runner.engine = recorder = Recorder(runner.engine)
    saved = tmp_path / "c.json"
    code, out = chat(
        tmp_path,
        f"/attach '{png}'",
        "Describe the image.",
        "And the colours?",
        "/stats",
        f"/save {saved} --ref",
        "/exit",
        runner=runner,
        options=GenerationOptions(temperature=0, max_tokens=12),
    )
    assert code == 0 and "error" not in out
    (b1, a1, u1), (b2, a2, u2) = recorder.log
    assert a1["media_encodes"] == 1  # once, in the background after /attach or in turn 1
    assert a2["media_encodes"] - b2["media_encodes"] == 0  # turn 2 never encodes the image again
    new_tokens = u2.prompt_tokens - (u1.prompt_tokens + u1.completion_tokens)
    evaluated = a2["prompt_tokens_evaluated"] - b2["prompt_tokens_evaluated"]
    assert evaluated == new_tokens == u2.prompt_tokens - u2.cached_tokens > 0
    assert "engine: media_encodes 1" in out
    messages = json.loads(saved.read_text())["messages"]
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=2) as fresh:
        assert fresh.chat(messages[:3], temperature=0, max_tokens=12).content == messages[3]["content"]
        assert fresh.chat(messages[:1], temperature=0, max_tokens=12).content == messages[1]["content"]


def test_retry_with_a_fixed_seed_gives_the_same_answer(models, tmp_path):
    runner = Runner(models["llm"], None, n_ctx=1024, threads=2)
    code, out = chat(
        tmp_path,
        "Hello",
        "/retry",
        "/set seed 8",
        "/retry",
        f"/save {tmp_path / 'c.json'}",
        "/exit",
        runner=runner,
        options=GenerationOptions(temperature=0.9, seed=7, max_tokens=16),
    )
    notes = ("llm", "seed", "(cut", "saved")
    answers = [line for line in out.splitlines() if line and not line.startswith(notes)]
    assert code == 0 and len(answers) == 3, out
    assert answers[0] == answers[1] != answers[2]
    messages = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"] == answers[2]


def test_a_long_conversation_on_a_small_context_keeps_going(models, tmp_path):
    runner = Runner(models["llm"], None, n_ctx=256, threads=2)
    questions = [f"Question number {i}: " + "tell me more about it " * 2 for i in range(6)]
    code, out = chat(
        tmp_path, *questions, "/stats", "/exit", runner=runner, options=GenerationOptions(temperature=0, max_tokens=16)
    )
    assert code == 0 and "error" not in out, out
    assert "oldest messages left the model's view" in out
    assert out.count("cut at max_tokens=16") == 6  # every question was answered


# -- a real terminal -----------------------------------------------------------------------


def _strip(data: bytes) -> str:
    ansi = r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>78]"
    text = re.sub(ansi, "", data.decode("utf-8", "replace"))
    return re.sub(r"[^0-9A-Za-z]", "", text)


def test_a_real_terminal(models, tmp_path):
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=1024, threads=2) as r:
        expected = _strip(r.chat([{"role": "user", "content": "Hello"}], temperature=0, max_tokens=12).content.encode())
    assert len(expected) >= 4
    args = [*model_args(models, greedy=False), "--temperature", "0", "--max-tokens", "12", "--ctx-size", "1024"]
    term = Pty(args, tmp_path)
    try:
        assert term.until(lambda b: b"?25h" in b.partition(b"Ctrl-D leaves")[2], 30), bytes(
            term.seen
        )  # the prompt is up
        term.type(b"Hello\r")
        assert term.until(lambda b: expected in _strip(b.split(b"Hello", 1)[-1]), 30), bytes(term.seen)
    finally:
        assert term.close() == 0  # /exit
    assert (tmp_path / "history").read_text().strip().endswith("+/exit")


# -- attachments encoded while the user types ------------------------------------------------


def test_an_attachment_is_encoded_in_the_background_and_the_question_reuses_it(tmp_path, png):
    fake = FakeEngine(encode_seconds=0.3)
    code, out = chat(tmp_path, f"/attach '{png}'", "What is it?", "/exit", runner=Runner(engine=fake))
    assert code == 0 and "error" not in out
    assert len(fake.encoded) == 1 and fake.encode_threads[0].startswith("mmchat encode")  # not the REPL's thread
    assert fake.stats.media_encodes == 1 and re.search(r"\[image 96x64 \w+\] What is it\?", out)


class Watched(FakeEngine):
    """Notes, at each question, which media had been encoded and which encodes had stopped by then."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[tuple[list[str], list[str]]] = []
        self.preparing = threading.Event()

    def prepare(self, media, report=None, should_stop=None, on_plan=None):
        self.preparing.set()
        return super().prepare(media, report, should_stop, on_plan)

    def stream(self, turns, options):
        self.preparing.wait(30)  # the encode's thread has begun, however late a busy machine ran it
        events = super().stream(turns, options)
        yield next(events)  # Started: the engine let this turn in, so no encode is running any more
        self.seen.append((list(self.encoded), list(self.stopped)))
        yield from events


@pytest.mark.parametrize("how", ["/detach", "/clear"])
def test_detach_and_clear_stop_the_background_encode(tmp_path, png, how):
    fake = Watched(encode_seconds=10)  # after a /detach that did not stop it, the question would wait for it
    code, out = chat(tmp_path, f"/attach '{png}'", how, "Still there?", "/exit", runner=Runner(engine=fake))
    assert code == 0 and "Still there?" in out and "[image" not in out  # the question went without the image
    assert len(fake.stopped) == 1 and fake.seen == [([], fake.stopped)]  # stopped by /detach or /clear, not /exit


def test_ctrl_c_at_the_prompt_stops_the_background_encode_first(tmp_path, png):
    fake = FakeEngine(encode_seconds=30)
    code, out = chat(tmp_path, f"/attach '{png}'", CTRL_C, "/attachments", "/exit", runner=Runner(engine=fake))
    assert code == 0 and "stopped encoding in the background" in out and "1. image" in out  # still attached
    assert "press Ctrl-C again" not in out  # the first Ctrl-C went to the encode, not to leaving
    assert fake.encoded == []


def test_the_toolbar_shows_the_background_encode(tmp_path, png):
    fake = FakeEngine(encode_seconds=2)
    runner = Runner(engine=fake)
    state = Chat(runner, lambda n: runner, "m.gguf", GenerationOptions(), Conversation(), Console(file=io.StringIO()))
    state.safely(Attach((str(png),)))
    assert re.search(r"encoding photo one\.png \d+%", state.toolbar())
    state.stop_background()
    assert "encoding" not in state.toolbar()
