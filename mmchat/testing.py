"""A fake engine for fast tests of code built on mmchat (CLI, REPL, users' own scripts).

It answers deterministically from what it was given and records every call, so a test can
check what reached the model without loading one. It implements the whole engine interface
(`mmchat.engine.base.Engine`), token counting included, so the REPL fits conversations into
its context window exactly as it does on a real model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .engine.base import Capabilities, EngineStats, Event, Finished, Started, Timings, Turn, Usage
from .media import Audio, Image
from .options import GenerationOptions


class FakeEngine:
    def __init__(self, *, vision: bool = True, audio: bool = True, sample_rate: int = 16000, n_ctx: int = 4096, reply: str | None = None):
        self._caps = Capabilities(vision, audio, sample_rate if audio else None, n_ctx, "fake-model")
        self.reply = reply
        self.calls: list[tuple[list[Turn], GenerationOptions]] = []
        self.stats = EngineStats()

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

    def stream(self, turns: Sequence[Turn], options: GenerationOptions) -> Iterator[Event]:
        self.calls.append((list(turns), options))
        text = self.reply if self.reply is not None else self.describe(turns)
        words = text.split(" ")
        n = min(len(words), options.max_tokens)
        usage, timings = Usage(self.count_tokens(turns)), Timings()
        self.stats.prompt_tokens_evaluated += usage.prompt_tokens
        yield Started(usage, timings)
        for i, word in enumerate(words[:n]):
            usage.completion_tokens += 1
            yield word if i == 0 else " " + word
        yield Finished("stop" if n == len(words) else "length", usage, timings)

    def close(self) -> None:
        pass
