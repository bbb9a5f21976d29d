"""The conversation the REPL holds (no terminal, no files here): parsed messages, pending
attachments, and which turns are in the model's window.

Every turn sends the whole conversation; the engine's KV-prefix reuse makes that cheap, so this
class only has to keep it right. Messages are parsed once, where they come in (an attachment when
attached, typed text when the turn is made, a loaded file or `chat --continue` when read), and kept
as frozen `Message`s: the Runner and the token counts take them as they are, never parsing again.
A failed turn is rolled back with a snapshot; the oldest turns leave the model's window when the
context fills. OpenAI's dicts are written only at the edges (files.py: /save; the log).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import messages as msgs
from ..errors import InputError
from ..inputs.resolver import Attachment
from ..media import Kind

if TYPE_CHECKING:
    from ..runner import Runner

TURN_OVERHEAD = 16  # template tokens around one message, as an upper bound for the estimate


@dataclasses.dataclass(frozen=True, eq=False)
class Message(msgs.Message):
    """A parsed message as the REPL keeps it: `interrupted` marks an answer cut short by Ctrl-C (shown
    and saved as metadata; the model sees only the text). It also reads as OpenAI's dict
    (`m["content"]`, `m.get("interrupted")`, `==` a dict), as the REPL's messages always have."""

    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's dict, with `"interrupted": True` where the answer was cut short."""
        return {**self.to_openai(), "interrupted": True} if self.interrupted else self.to_openai()

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.as_dict() == dict(other)
        if isinstance(other, msgs.Message):
            mark = getattr(other, "interrupted", False)
            return (self.role, self.parts, self.plain, self.interrupted) == (other.role, other.parts, other.plain, mark)
        return NotImplemented

    __hash__ = msgs.Message.__hash__

    def for_model(self) -> Message:
        """The message as the model gets it: without the interrupted mark."""
        return dataclasses.replace(self, interrupted=False) if self.interrupted else self


def kept(message: msgs.Message | Mapping[str, Any]) -> Message:
    """A message as the REPL keeps it: a parsed one as it is (nothing parsed again), a dict parsed once."""
    if isinstance(message, Message):
        return message
    mark = False
    if isinstance(message, Mapping):
        mark = message.get("interrupted") is True
        message = msgs.parse_message(message)
    return Message(message.role, message.parts, message.plain, interrupted=mark)


def text(role: str, content: str, *, interrupted: bool = False) -> Message:
    """A plain text message (a system prompt, an answer): nothing to parse."""
    return Message(role, (msgs.TextPart(content),), plain=True, interrupted=interrupted)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The whole state, to undo a turn that failed half-way."""

    system: str | None
    messages: tuple[Message, ...]
    pending: tuple[Attachment, ...]
    first: int
    used: int | None
    used_upto: int


class Conversation:
    """System prompt + parsed messages + pending attachments; `to_model()` is what the model gets."""

    def __init__(self, system: str | None = None, messages: Iterable[msgs.Message | Mapping[str, Any]] = ()):
        self.system = system or None
        self._messages: tuple[Message, ...] = tuple(kept(m) for m in messages)
        self.pending: list[Attachment] = []
        self.first = 0  # messages before this index left the model's window (context full)
        self.used: int | None = None  # tokens in context after the last answer; None: unknown
        self._used_upto = 0  # len(messages) when `used` was measured

    @property
    def messages(self) -> list[Message]:
        """Every message, in order (a copy: the methods change the conversation)."""
        return list(self._messages)

    # -- state -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(self.system, self._messages, tuple(self.pending), self.first, self.used, self._used_upto)

    def restore(self, snap: Snapshot) -> None:
        self.system, self._messages, self.pending = snap.system, snap.messages, list(snap.pending)
        self.first, self.used, self._used_upto = snap.first, snap.used, snap.used_upto

    def set_system(self, text: str | None) -> None:
        self.system = text or None
        self.used = None

    def clear(self) -> None:
        """A new conversation: messages and attachments go, the system prompt stays."""
        self._messages, self.pending, self.first, self.used = (), [], 0, None

    def to_model(self) -> list[Message]:
        """What the model sees, parsed already (the Runner takes the Messages as they are): the system
        prompt, then the window of turns."""
        head = [text("system", self.system)] if self.system else []
        return [*head, *(m.for_model() for m in self._messages[self.first :])]

    # -- attachments -----------------------------------------------------------------

    def attach(self, runner: Runner, url: str, kind: Kind | None = None) -> Attachment:
        """Check, decode and add one attachment; a file that fails any check raises and is not added."""
        attachment = runner.attachment(url, kind)
        self.pending.append(attachment)
        return attachment

    def detach(self, index: int | None = None) -> list[Attachment]:
        """Remove pending attachment `index` (1-based), or all of them."""
        if index is None:
            gone, self.pending = self.pending, []
            return gone
        if not 1 <= index <= len(self.pending):
            have = f"1 to {len(self.pending)}" if self.pending else "none are pending"
            raise InputError(f"no attachment {index}: {have}; /attachments lists them")
        return [self.pending.pop(index - 1)]

    # -- turns -----------------------------------------------------------------------

    def user_turn(self, text: str) -> Message:
        """Add the user's message: pending attachments first, in order (each the part it was parsed
        into when attached), then the text; [[N]] in the text places attachment N there instead."""
        message = kept(msgs.user_turn(text, [a.media_part for a in self.pending]))
        self._messages += (message,)
        self.pending = []
        return message

    def add_answer(self, answer: str, *, interrupted: bool = False, used: int | None = None) -> None:
        """Keep the model's answer; an interrupted one keeps exactly what was generated."""
        self._messages += (text("assistant", answer, interrupted=interrupted),)
        self.used, self._used_upto = used, len(self._messages)

    def last_answer(self) -> str | None:
        return next((m.text for m in reversed(self._messages) if m.role == "assistant"), None)

    def undo(self) -> list[Message]:
        """Remove the last user message and everything after it (its answer)."""
        starts = [i for i, m in enumerate(self._messages) if m.role == "user"]
        if not starts:
            raise InputError("nothing to undo: the conversation has no messages from you")
        gone, self._messages = list(self._messages[starts[-1] :]), self._messages[: starts[-1]]
        self.first = min(self.first, len(self._messages))
        self.used = None
        return gone

    def retry(self) -> Message | None:
        """Drop the last answer so it can be generated again; the removed answer, if any."""
        if not any(m.role == "user" for m in self._messages):
            raise InputError("nothing to retry: ask something first")
        removed = None
        if self._messages[-1].role == "assistant":
            removed, self._messages = self._messages[-1], self._messages[:-1]
        self.used = None
        return removed

    # -- context window --------------------------------------------------------------

    def drop_oldest(self) -> list[Message]:
        """Move the oldest turn out of the model's window; [] when only the last user turn is left."""
        window = self._messages[self.first :]
        starts = [i for i, m in enumerate(window) if m.role == "user" and i > 0]
        if not starts:
            return []
        self.first += starts[0]
        self.used = None
        return list(window[: starts[0]])

    def fit(self, count: Callable[[list[Message]], int], limit: int) -> list[Message]:
        """Drop the oldest turns until `count(to_model())` is at most `limit`; what was dropped. The
        count gets the parsed messages (Runner.count_tokens takes them as they are: nothing parsed again)."""
        dropped: list[Message] = []
        while count(self.to_model()) > limit:
            gone = self.drop_oldest()
            if not gone:
                break
            dropped += gone
        return dropped

    def surely_fits(self, limit: int) -> bool:
        """A cheap upper bound: known usage plus every byte of the new text fits, and no new media."""
        if self.used is None or self._used_upto > len(self._messages):
            return False
        new = self._messages[self._used_upto :]
        if any(isinstance(p, msgs.MediaPart) for m in new for p in m.parts):
            return False  # new media: only counting tells
        size = sum(len(m.text.encode()) + TURN_OVERHEAD for m in new)
        return self.used + TURN_OVERHEAD + size <= limit  # one more overhead: the last answer's closing tokens
