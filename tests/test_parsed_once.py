"""A conversation is parsed once per turn: each part validated (a MediaPart made), located and
admitted (the media policy) once, whatever the entry (Runner.chat, `ask` with the log and
`--continue`, a batch line, the request API, the REPL); a parsed conversation cannot be changed into
an unchecked one; and a device URL is read by the same reader from the CLI and from the Runner.

On the FakeEngine, no model: what is counted is what a user pays for in time on every turn.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mmchat import messages as msgs
from mmchat.batch import read_jsonl
from mmchat.chat.commands import Attach, Load, Save, Say
from mmchat.chat.conversation import Conversation as ChatConversation
from mmchat.chat.session import Chat
from mmchat.errors import InputError
from mmchat.inputs import capture
from mmchat.inputs import part as part_location
from mmchat.inputs.policy import MediaPolicy
from mmchat.options import GenerationOptions
from mmchat.request import ChatCompletionRequest
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.helpers import invoke
from tests.support.mediafiles import noise_png


@dataclasses.dataclass
class Counts:
    """How often each medium (by file name) was validated, located and admitted."""

    validated: Counter = dataclasses.field(default_factory=Counter)
    located: Counter = dataclasses.field(default_factory=Counter)
    admitted: Counter = dataclasses.field(default_factory=Counter)

    def clear(self) -> None:
        for counter in (self.validated, self.located, self.admitted):
            counter.clear()

    def each(self, *names: str, policy: bool = True) -> None:
        """Every one of `names` exactly once on each count (admitted only where a policy is given)."""
        once = dict.fromkeys(names, 1)
        assert dict(self.validated) == once
        assert dict(self.located) == once
        assert dict(self.admitted) == (once if policy else {})


def _name(url: str) -> str:
    return os.path.basename(url.strip().split("#", 1)[0])


@pytest.fixture
def counts(monkeypatch) -> Counts:
    seen = Counts()
    made, locate, admit = msgs.MediaPart.__post_init__, part_location.locate, MediaPolicy.admit

    def validated(part: msgs.MediaPart) -> None:
        made(part)
        seen.validated[_name(part.location.text)] += 1

    def located(url: str) -> part_location.Location:
        seen.located[_name(url)] += 1
        return locate(url)

    def admitted(policy: MediaPolicy, where: part_location.Location) -> part_location.Location:
        seen.admitted[_name(where.text)] += 1
        return admit(policy, where)

    monkeypatch.setattr(msgs.MediaPart, "__post_init__", validated)
    monkeypatch.setattr(part_location, "locate", located)
    monkeypatch.setattr(MediaPolicy, "admit", admitted)
    return seen


@pytest.fixture
def pngs(tmp_path) -> list[Path]:
    return [noise_png(tmp_path / f"{name}.png", seed=i, size=(24, 16)) for i, name in enumerate("abc")]


def _runner(tmp_path: Path) -> Runner:
    return Runner(engine=FakeEngine(), policy=MediaPolicy(local_files=[tmp_path]))


def _asking(*images: Path, text: str = "compare") -> dict:
    return msgs.user_message(text, [msgs.image_part(str(p)) for p in images])


def test_runner_chat_parses_each_part_once_per_turn(tmp_path, pngs, counts):
    a, b, c = pngs
    runner = _runner(tmp_path)
    first = [_asking(a, b)]
    reply = runner.chat(first, max_tokens=50)
    counts.each("a.png", "b.png")
    counts.clear()
    runner.chat([*first, msgs.assistant_message(reply.content), _asking(c, text="and this")], max_tokens=50)
    counts.each("a.png", "b.png", "c.png")  # the next turn sends them all again: once each, again


def test_a_parsed_conversation_is_used_as_it_is(tmp_path, pngs, counts):
    runner = _runner(tmp_path)
    conversation = msgs.parse_conversation([_asking(*pngs[:2])])
    counts.clear()
    runner.chat(conversation, max_tokens=50)
    assert not counts.validated and not counts.located  # parsed by the caller, not again
    assert dict(counts.admitted) == {"a.png": 1, "b.png": 1}  # what the policy lets this turn read


def test_ask_with_the_log_and_a_continue_parse_each_part_once_per_turn(pngs, counts):
    a, b, c = pngs
    first, _ = invoke("ask", "compare", "-i", str(a), "-i", str(b))
    assert first.exit_code == 0, first.output
    counts.each("a.png", "b.png", policy=False)  # the CLI reads what the user can (no policy)
    counts.clear()
    second, fake = invoke("ask", "--continue", "and this one", "-i", str(c))
    assert second.exit_code == 0, second.output
    assert [type(s).__name__ for t in fake.calls[0][0] for s in t.segments].count("Image") == 3
    counts.each("a.png", "b.png", "c.png", policy=False)  # the logged two parsed on loading, not again


def test_a_batch_line_parses_each_part_once(tmp_path, pngs, counts):
    line = {"custom_id": "r1", "body": {"messages": [_asking(*pngs[:2])], "max_tokens": 50}}
    [request] = read_jsonl([json.dumps(line)], GenerationOptions(), "in.jsonl")
    assert request.error is None
    _runner(tmp_path).chat(request.messages, request.options)
    counts.each("a.png", "b.png")


def test_a_batch_file_line_parses_its_part_once(tmp_path, pngs, counts):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"custom_id": "r1", "body": {"messages": [_asking(*pngs[:2])]}}) + "\n")
    result, fake = invoke("batch", "-i", str(path))
    assert result.exit_code == 0, result.output
    assert len(fake.calls) == 1
    counts.each("a.png", "b.png", policy=False)


def test_the_request_api_parses_each_part_once(tmp_path, pngs, counts):
    request = ChatCompletionRequest(messages=[_asking(*pngs[:2])], max_tokens=50)
    completion = _runner(tmp_path).send_chat_completion_request(request)
    assert completion.choices[0].message.content
    counts.each("a.png", "b.png")


def test_a_parsed_conversation_cannot_be_changed_into_an_unchecked_one(tmp_path, pngs):
    bad = {"type": "text", "strat": 5}
    conversation = msgs.parse_conversation([_asking(pngs[0])])
    with pytest.raises(AttributeError):
        conversation.append({"role": "user", "content": [bad]})  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        conversation[0].parts.append(bad)  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation[0].parts = (*conversation[0].parts, bad)  # type: ignore[misc]
    with pytest.raises(TypeError):
        conversation[0] = {"role": "user", "content": [bad]}  # type: ignore[index]
    with pytest.raises(InputError):
        msgs.Message("user", (bad,))  # type: ignore[arg-type]
    runner = _runner(tmp_path)
    grown = [*conversation, {"role": "user", "content": [bad]}]  # what is added is checked
    with pytest.raises(InputError, match=r"messages\[1\]\.content\[0\]: a text part needs a string 'text'"):
        runner.chat(grown)
    checked = msgs.validate_messages([_asking(pngs[0])])  # the old hole: a checked list grown by hand
    checked[0]["content"].append(bad)
    with pytest.raises(InputError, match="needs a string 'text'"):
        runner.chat(checked)


def test_the_cli_and_the_runner_read_a_device_through_the_same_reader(monkeypatch):
    taken: list[tuple[str, str]] = []

    def screen(where: part_location.Location, terminal: capture.Terminal | None) -> capture.Captured:
        taken.append(("screen", where.text))
        return capture.Captured(pixels=np.full((12, 20, 3), 200, dtype=np.uint8))

    monkeypatch.setitem(capture.CAPTURES, "screen", screen)
    result, fake = invoke("ask", "what is on it", "-i", "screen:")
    assert result.exit_code == 0, result.output
    assert type(fake.calls[0][0][0].segments[0]).__name__ == "Image"
    reply = Runner(engine=FakeEngine(), devices=True).chat([msgs.user_message("what", [msgs.image_part("screen:")])])
    assert "[image 20x12" in reply.content
    assert taken == [("screen", "screen:"), ("screen", "screen:")]  # once from each, by the one reader


def test_a_file_part_is_heard_as_the_kind_its_content_told(pngs):
    heard = []
    part = {"type": "file", "file": {"url": str(pngs[0]), "filename": "a.png"}}  # OpenAI's name, a file's option
    stream = Runner(engine=FakeEngine()).stream(
        [{"role": "user", "content": [msgs.text_part("look"), part]}],
        on_media=lambda ref, segments: heard.append((ref.kind, dict(ref.options), ref.where)),
    )
    list(stream)
    assert heard == [("image", {}, "messages[0].content[1]")]


# -- the REPL: a part is parsed where it comes in (/attach, /load), then sent as it is ---------


def _repl(engine: FakeEngine) -> Chat:
    """The REPL as `mmchat chat` opens it (the user's own files and devices: no policy), without a terminal."""
    runner = Runner(engine=engine, devices=True)
    options = GenerationOptions(max_tokens=8)
    return Chat(runner, lambda name: runner, "m.gguf", options, ChatConversation(), Console(file=io.StringIO()))


def _images(turns) -> int:
    return sum(type(s).__name__ == "Image" for turn in turns for s in turn.segments)


def test_the_repl_parses_an_attached_part_once_and_each_turn_sends_it_as_it_is(tmp_path, pngs, counts):
    fake = FakeEngine()
    repl = _repl(fake)
    repl.safely(Attach((str(pngs[0]),)))
    repl.background.wait()
    assert dict(counts.validated) == {"a.png": 1}  # the part is made once, when attached
    for question in ("what is it?", "and its colours?"):  # a turn, then a follow-up that sends it again
        counts.clear()
        repl.safely(Say(question))
        counts.each(policy=False)  # neither validated nor located again: the Runner takes it parsed
    assert [_images(turns) for turns, _ in fake.calls] == [1, 1]
    counts.clear()
    repl.safely(Save(str(tmp_path / "c.json")))  # written as OpenAI's dicts, the image embedded
    counts.each(policy=False)
    assert json.loads((tmp_path / "c.json").read_text())["messages"][0]["content"][0]["image_url"]["url"].startswith(
        "data:image/png"
    )


def test_the_repl_fits_its_window_without_parsing_again(pngs, counts):
    fake = FakeEngine(n_ctx=12)  # 9 prompt tokens once 3 are kept for the answer: two turns do not fit
    repl = _repl(fake)
    repl.safely(Attach((str(pngs[0]),)))
    repl.background.wait()
    repl.safely(Say("what is it?"))
    counts.clear()
    repl.safely(Say("and its colours?"))  # counted with the first turn, which must leave the window
    counts.each(policy=False)
    assert [_images(turns) for turns, _ in fake.calls] == [1, 0]
    assert [t.segments for t in fake.calls[-1][0]] == [("and its colours?",)]
    assert repl.notice == "context full: 2 oldest messages left the model's view"


def test_a_loaded_conversation_is_parsed_once_when_loaded(tmp_path, pngs, counts):
    saved = tmp_path / "c.json"
    saved.write_text(json.dumps({"messages": [_asking(pngs[0], text="what is it?"), msgs.assistant_message("noise")]}))
    fake = FakeEngine()
    repl = _repl(fake)
    repl.safely(Load(str(saved)))
    assert dict(counts.validated) == {"a.png": 1} and dict(counts.located) == {"a.png": 1}
    counts.clear()
    repl.safely(Say("and its colours?"))
    counts.each(policy=False)
    assert _images(fake.calls[0][0]) == 1


def test_chat_continue_opens_the_repl_on_the_logged_conversation_parsed_once(pngs, counts):
    a, b = pngs[:2]
    first, _ = invoke("ask", "compare", "-i", str(a), "-i", str(b))
    assert first.exit_code == 0, first.output
    counts.clear()
    result, fake = invoke("chat", "--continue", input="and now?\nand again?\n")
    assert result.exit_code == 0, result.output
    assert [_images(turns) for turns, _ in fake.calls] == [2, 2]  # both turns send the logged images
    counts.each("a.png", "b.png", policy=False)  # parsed when the log was read; not per turn, nor by the REPL
