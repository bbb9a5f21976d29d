"""What a turn adds to a logged conversation, found in memory rather than by reading the log back.

Each request sends the whole conversation (the REPL: the turns still in the context window),
so a turn's row keeps only what is new: the conversation after it is the previous one's first
`prefix` messages, then (when the window moved on) the previous one's messages from `resumed`
on, then the row's own messages and answer. Comparing with the previous conversation as the
caller gave it (kept by the store that wrote it) makes a write cost the same at turn 1 and
turn 1,000: parsed messages are immutable, so they are shared, and only the new ones are converted and stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from .. import messages as msgs


@dataclasses.dataclass(frozen=True)
class Overlap:
    """`after` == before[:prefix] + before[resumed:] + after[new:]; `resumed` None: nothing after `prefix` goes on."""

    prefix: int
    resumed: int | None
    new: int  # where what is new in `after` begins


def overlap(before: Sequence[Any], after: Sequence[Any]) -> Overlap:
    """How `after` repeats `before`: a common beginning, and then maybe the rest of `before` from a later
    message on (the oldest turns left the window: the system prompt stays, the rest goes on)."""
    prefix = 0
    for x, y in zip(before, after):
        if x is not y and x != y:  # parsed messages a conversation carries on are the same objects: no field compare
            break
        prefix += 1
    if prefix < min(len(before), len(after)):
        first = after[prefix]
        for resumed in range(prefix + 1, len(before)):
            run = len(before) - resumed
            if before[resumed] == first and list(before[resumed:]) == list(after[prefix : prefix + run]):
                return Overlap(prefix, resumed, prefix + run)
    return Overlap(prefix, None, prefix)


def shares_a_turn(before: Sequence[msgs.Message], after: Sequence[msgs.Message]) -> bool:
    """Whether `after` repeats a user or assistant message of `before` (else it is a new conversation:
    the REPL's /clear or /load). Most requests go on from the previous one, which `overlap` sees at once."""
    found = overlap(before, after)
    if found.resumed is not None or any(m.role != "system" for m in before[: found.prefix]):
        return True
    seen = {_key(m) for m in before if m.role != "system"}
    return any(_key(m) in seen for m in after if m.role != "system")


def _key(message: msgs.Message) -> str:
    return json.dumps(message.to_openai(), ensure_ascii=False, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Written:
    """A conversation as the last turn this process logged left it (messages as the caller sent them)."""

    cid: str
    seq: int
    messages: list[msgs.Message]  # the request's messages (immutable: shared, not copied), then the answer
    digests: dict[str, str | None]  # url -> the sha256 logged for it

    def overlap(self, messages: Sequence[msgs.Message], digests: dict[str, str | None]) -> Overlap:
        """As `overlap`, except that a medium whose bytes changed under the same name is new from its first message."""
        found = overlap(self.messages, messages)
        changed = {url for url, sha in digests.items() if sha is not None and self.digests.get(url) not in (None, sha)}
        if changed:
            first = next((i for i, m in enumerate(messages[: found.new]) if _mentions(m, changed)), None)
            if first is not None:
                return Overlap(min(found.prefix, first), None, min(found.prefix, first))
        return found

    def after(
        self,
        cid: str,
        seq: int,
        messages: Sequence[msgs.Message],
        digests: dict[str, str | None],
        answer: str,
    ) -> Written:
        """The next turn's state: the request's messages as the caller sent them (what it repeats of this
        turn's equals `messages[: overlap.new]`, so the caller's own objects are kept, and its next request shares them:
        comparing it costs an identity check a message), then the answer."""
        known = {**self.digests, **{url: sha for url, sha in digests.items() if sha is not None}}
        return Written(cid, seq, [*messages, msgs.parse_message(msgs.assistant_message(answer))], known)

    @classmethod
    def first(
        cls, cid: str, seq: int, messages: Sequence[msgs.Message], digests: dict[str, str | None], answer: str
    ) -> Written:
        return cls("", 0, [], {}).after(cid, seq, messages, digests, answer)


def rebuild(previous: list[Any], prefix: int, resumed: int | None, new: list[Any]) -> list[Any]:
    """The conversation after a logged turn, from the one before it and the turn's row."""
    return previous[:prefix] + (previous[resumed:] if resumed is not None else []) + new


def _mentions(message: msgs.Message, urls: set[str]) -> bool:
    return any(isinstance(part, msgs.MediaPart) and part.url in urls for part in message.parts)
