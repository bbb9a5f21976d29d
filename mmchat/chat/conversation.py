"""The conversation the REPL holds (no terminal, no files here): messages, pending attachments,
and which turns are in the model's window.

Every turn sends the whole message list; the engine's KV-prefix reuse makes that cheap, so
this class only has to keep the list right: attachments are checked when attached (a bad
file never reaches a message), a failed turn is rolled back with a snapshot, and the oldest
turns leave the model's window when the context fills.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import messages as msgs
from ..errors import InputError
from ..inputs.resolver import Attachment
from ..media import Kind

if TYPE_CHECKING:
    from ..runner import Runner

Message = msgs.MessageDict
TURN_OVERHEAD = 16  # template tokens around one message, as an upper bound for the estimate


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
    """System prompt + messages + pending attachments; `to_model()` is what the model gets."""

    def __init__(self, system: str | None = None, messages: Sequence[Message] = ()):
        self.system = system or None
        self.messages: list[Message] = list(messages)
        self.pending: list[Attachment] = []
        self.first = 0  # messages before this index left the model's window (context full)
        self.used: int | None = None  # tokens in context after the last answer; None: unknown
        self._used_upto = 0  # len(messages) when `used` was measured

    # -- state -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(self.system, tuple(self.messages), tuple(self.pending), self.first, self.used, self._used_upto)

    def restore(self, snap: Snapshot) -> None:
        self.system, self.messages, self.pending = snap.system, list(snap.messages), list(snap.pending)
        self.first, self.used, self._used_upto = snap.first, snap.used, snap.used_upto

    def set_system(self, text: str | None) -> None:
        self.system = text or None
        self.used = None

    def clear(self) -> None:
        """A new conversation: messages and attachments go, the system prompt stays."""
        self.messages, self.pending, self.first, self.used = [], [], 0, None

    def to_model(self) -> list[Message]:
        """The messages the model sees: the system prompt, then the window of turns."""
        head = [msgs.system_message(self.system)] if self.system else []
        return head + [{"role": m["role"], "content": m["content"]} for m in self.messages[self.first :]]

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
        """Add the user's message: pending attachments first, in order, then the text."""
        message = msgs.user_message(text, [a.part for a in self.pending])
        self.messages.append(message)
        self.pending = []
        return message

    def add_answer(self, text: str, *, interrupted: bool = False, used: int | None = None) -> None:
        """Keep the model's answer; an interrupted one keeps exactly what was generated."""
        message = msgs.assistant_message(text)
        if interrupted:
            message["interrupted"] = True  # shown and saved as metadata; the model sees only the text
        self.messages.append(message)
        self.used, self._used_upto = used, len(self.messages)

    def last_answer(self) -> str | None:
        for message in reversed(self.messages):
            if message["role"] == "assistant":
                return message["content"] if isinstance(message["content"], str) else text_of(message)
        return None

    def undo(self) -> list[Message]:
        """Remove the last user message and everything after it (its answer)."""
        starts = [i for i, m in enumerate(self.messages) if m["role"] == "user"]
        if not starts:
            raise InputError("nothing to undo: the conversation has no messages from you")
        gone = self.messages[starts[-1] :]
        del self.messages[starts[-1] :]
        self.first = min(self.first, len(self.messages))
        self.used = None
        return gone

    def retry(self) -> Message | None:
        """Drop the last answer so it can be generated again; the removed answer, if any."""
        if not any(m["role"] == "user" for m in self.messages):
            raise InputError("nothing to retry: ask something first")
        removed = None
        if self.messages[-1]["role"] == "assistant":
            removed = self.messages.pop()
        self.used = None
        return removed

    # -- context window --------------------------------------------------------------

    def drop_oldest(self) -> list[Message]:
        """Move the oldest turn out of the model's window; [] when only the last user turn is left."""
        window = self.messages[self.first :]
        starts = [i for i, m in enumerate(window) if m["role"] == "user" and i > 0]
        if not starts:
            return []
        gone = window[: starts[0]]
        self.first += starts[0]
        self.used = None
        return gone

    def fit(self, count: Callable[[list[Message]], int], limit: int) -> list[Message]:
        """Drop the oldest turns until `count(to_model())` is at most `limit`; what was dropped."""
        dropped: list[Message] = []
        while count(self.to_model()) > limit:
            gone = self.drop_oldest()
            if not gone:
                break
            dropped += gone
        return dropped

    def surely_fits(self, limit: int) -> bool:
        """A cheap upper bound: known usage plus every byte of the new text fits, and no new media."""
        if self.used is None or self._used_upto > len(self.messages):
            return False
        new = self.messages[self._used_upto :]
        if any(not isinstance(m["content"], str) and any(p["type"] != "text" for p in m["content"]) for m in new):
            return False  # new media: only counting tells
        size = sum(len(text_of(m).encode()) + TURN_OVERHEAD for m in new)
        return self.used + TURN_OVERHEAD + size <= limit  # one more overhead: the last answer's closing tokens


def text_of(message: Message) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p.get("type") == "text")
