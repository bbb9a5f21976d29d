"""A fake engine for fast tests of code built on mmchat (CLI, REPL, users' own scripts).

It answers deterministically from what it was given and records every call, so a test can
check what reached the model without loading one. It implements the whole engine interface
(`mmchat.engine.base.Engine`), token counting included, so the REPL fits conversations into
its context window exactly as it does on a real model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .engine.base import (
    MEDIA_MARKER,
    Capabilities,
    EngineStats,
    Event,
    Finished,
    MediaCost,
    Plan,
    Started,
    Timings,
    Turn,
    Usage,
)
from .media import Audio, Image
from .options import GenerationOptions


class FakeEngine:
    """`encode_seconds` makes each medium cost that long to "encode", the first time it is seen
    (in a turn or in `prepare`), in small steps that report progress and can be stopped, so
    tests of background encoding see what a slow projector would do."""

    def __init__(
        self,
        *,
        vision: bool = True,
        audio: bool = True,
        sample_rate: int = 16000,
        n_ctx: int = 4096,
        reply: str | None = None,
        encode_seconds: float = 0.0,
        audio_tokens_per_second: float = 25.0,
    ):
        cost = (
            (lambda seconds: int(seconds * audio_tokens_per_second)) if audio else None
        )  # whisper-style: 750 per 30 s
        self._caps = Capabilities(vision, audio, sample_rate if audio else None, n_ctx, "fake-model", audio_tokens=cost)
        self.reply = reply
        self.encode_seconds = encode_seconds
        self.calls: list[tuple[list[Turn], GenerationOptions]] = []
        self.stats = EngineStats()
        self.encoded: list[str] = []  # digests, in the order they were encoded
        self.encode_threads: list[str] = []  # the thread each was encoded in
        self.stopped: list[str] = []  # digests whose encode was stopped part-way (should_stop said so)
        self._lock = threading.RLock()  # as the real engine: one thread at a time inside
        self.saved_states: list[bool] = []  # each save_state call: whether it was to disk too

    def capabilities(self) -> Capabilities:
        return self._caps

    def describe(self, turns: Sequence[Turn]) -> str:
        """What the fake says: a summary of its input, so tests can tell inputs apart."""
        out = []
        for seg in turns[-1].segments:
            if isinstance(seg, Image):
                out.append(f"[image {seg.width}x{seg.height} {seg.digest()[:8]}]")
            elif isinstance(seg, Audio):
                out.append(f"[audio {seg.duration:.2f}s {seg.digest()[:8]}]")
            else:
                out.append(seg)
        return " ".join(out)

    def count_tokens(self, turns: Sequence[Turn]) -> int:
        """A word is a token, a medium is one: crude, but what `stream` reports as prompt_tokens."""
        return sum(len(s.split()) if isinstance(s, str) else 1 for t in turns for s in t.segments)

    def prepare(
        self,
        media: Sequence[Image | Audio],
        report: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_plan: Plan | None = None,
    ) -> bool:
        with self._lock:
            if on_plan is not None:
                on_plan(self.costs(media))
            return all(self._encode(m, report, should_stop) for m in media)

    def costs(self, media: Sequence[Image | Audio]) -> list[MediaCost]:
        """A medium is one token (as count_tokens says), cached once it was encoded."""
        with self._lock:
            return [MediaCost(1, m.digest() in self.encoded) for m in media]

    def _encode(self, medium: Image | Audio, report=None, should_stop=None) -> bool:
        if medium.digest() in self.encoded:
            return True
        steps = max(20, int(self.encode_seconds / 0.02))  # a stop is seen within 20 ms
        for step in range(steps):
            if should_stop is not None and should_stop():
                self.stopped.append(medium.digest())
                return False
            time.sleep(self.encode_seconds / steps)
            if report is not None:
                report((step + 1) / steps)
        self.encoded.append(medium.digest())
        self.encode_threads.append(threading.current_thread().name)
        self.stats.media_encodes += 1
        return True

    def prompt(self, turns: Sequence[Turn]) -> str:
        """The turns as `stream` reads them, one line each."""
        return "\n".join(
            f"{t.role}: " + "".join(s if isinstance(s, str) else MEDIA_MARKER for s in t.segments) for t in turns
        )

    def holds(self, medium: Image | Audio) -> bool:
        """As a local model: what it has encoded, it can be given again without pixels."""
        return medium.digest() in self.encoded

    def stream(self, turns: Sequence[Turn], options: GenerationOptions) -> Iterator[Event]:
        with self._lock:  # waits for a background encode, then finds its media encoded
            before = len(self.encoded)
            for medium in (s for t in turns for s in t.segments if not isinstance(s, str)):
                self._encode(medium)
            encoded = len(self.encoded) - before
        self.calls.append((list(turns), options))
        text = self.reply if self.reply is not None else self.describe(turns)
        words = text.split(" ")
        n = min(len(words), options.max_tokens)
        usage, timings = Usage(self.count_tokens(turns), encoded_media=encoded), Timings()
        self.stats.prompt_tokens_evaluated += usage.prompt_tokens
        yield Started(usage, timings)
        for i, word in enumerate(words[:n]):
            usage.completion_tokens += 1
            yield word if i == 0 else " " + word
        yield Finished("stop" if n == len(words) else "length", usage, timings)

    def save_state(self, *, disk: bool = True) -> bool:
        """Recorded, not kept: tests see who asks for a state and when."""
        self.saved_states.append(disk)
        return True

    def close(self) -> None:
        pass
