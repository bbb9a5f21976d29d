"""The one small interface every backend implements, and the values that cross it.

The engine never reads files or URLs: it gets turns whose parts are already text, decoded
`Image` pixels or `Audio` samples. That keeps bad input failing before a model is touched
and lets the same engine serve the CLI, the REPL and the Python API.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Callable, Optional, Protocol, Union

from ..media import Audio, Image, Kind
from ..options import GenerationOptions
from .placement import Placement

Segment = Union[str, Image, Audio]

#: progress(task, done, total): long steps report here (download, video decode, media encode)
Progress = Callable[[str, float, Optional[float]], None]


MEDIA_MARKER = "<__media__>"  # where a medium stands in a prompt shown to people: llama.cpp's default marker


@dataclasses.dataclass(frozen=True)
class Turn:
    """One chat message, its content flattened to text and decoded media, in order."""

    role: str
    segments: tuple[Segment, ...]


@dataclasses.dataclass(frozen=True)
class Capabilities:
    vision: bool
    audio: bool
    audio_sample_rate: int | None
    n_ctx: int
    model_name: str
    frame_pairs: bool = False  # the projector encodes two adjacent video frames as one (Qwen-VL)
    concurrent: bool = False  # answers several requests at once (a server): `batch --concurrency` applies
    #: tokens(seconds): at least how many tokens this much sound costs (None: no audio), so the
    #: resolver can refuse a recording from its length, before decoding it
    audio_tokens: Callable[[float], int] | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """Media kinds this model takes (video is frames, so it needs vision)."""
        kinds: list[Kind] = []
        if self.vision:
            kinds += ["image", "video"]
        if self.audio:
            kinds.append("audio")
        return tuple(kinds)

    def describe(self) -> str:
        names = [k for k, ok in (("images", self.vision), ("audio", self.audio)) if ok]
        return " and ".join(names) if names else "text only"


@dataclasses.dataclass(frozen=True)
class MediaCost:
    """What one medium costs the model before it is encoded (the REPL's preview says it)."""

    tokens: int
    cached: bool = False  # its encoding is kept already (memory or the disk cache): nothing to encode
    exact: bool = True  # False: an estimate (a server counts for itself)


#: on_plan(costs): the media's costs, one per medium, known once they are tokenized, before any encode
Plan = Callable[[list[MediaCost]], None]


@dataclasses.dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache of an earlier turn
    image_tokens: int = 0
    audio_tokens: int = 0
    encoded_media: int = 0  # media chunks encoded for this request (0: all came from a cache)
    frames_skipped: int = 0  # video frames sent as "unchanged" text instead of being encoded (engine/layout.py)
    draft_accepted: int = 0  # tokens drafted from the prompt that the model agreed with (engine/drafts.py)
    draft_rejected: int = 0  # and that it did not

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclasses.dataclass
class Timings:
    """Seconds spent in each stage of one request."""

    load: float = 0.0
    media_decode: float = 0.0
    media_encode: float = 0.0
    prompt: float = 0.0
    generation: float = 0.0
    first_token: float = 0.0  # from the start of the request to the first generated text
    ran_on: Placement | None = None  # where the text model and the projector ran (None: not known, a server)

    def tokens_per_second(self, n: int) -> float:
        return n / self.generation if self.generation > 0 else 0.0


@dataclasses.dataclass
class Started:
    """The prompt is evaluated and generation begins: the usage and timings the stream fills in as
    it goes, so an interrupted answer can still say what it cost."""

    usage: Usage
    timings: Timings


@dataclasses.dataclass
class Finished:
    """The last event of a stream: why it stopped, what it cost, and (where the engine knows them)
    the ids of the tokens it generated."""

    finish_reason: str  # "stop" | "length"
    usage: Usage
    timings: Timings
    token_ids: list[int] | None = None  # None: not known (a server sends text)


Event = Union[str, Started, Finished]


@dataclasses.dataclass
class Stats:
    """What the caches saved since the engine was loaded (`/stats`, `Runner.stats`): counters, and
    how many encoded media chunks memory holds now."""

    media_encodes: int = 0
    media_disk_hits: int = 0  # chunks whose embeddings came from the disk cache, not an encode
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    states_saved: int = 0  # KV states kept for a later request or process (engine/kvstate.py)
    states_restored: int = 0  # prompts whose prefix came from a saved KV state, not evaluated
    embeddings_in_memory: int = 0  # encoded media chunks kept in memory now (engine/embeddings.py)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


EngineStats = Stats  # the name engines and mmchat.testing count into


class Engine(Protocol):
    """A loaded model: everything its callers use, and nothing else.

    `stream` yields at most one `Started`, text deltas, then exactly one `Finished`.
    `count_tokens` is the prompt's exact size, which the REPL needs to fit a conversation into
    the context window; `prepare` encodes an attachment while the user types; `costs` says what
    media will cost (the preview's caption); `holds` says which media it can be given again
    without their pixels; `stats` counts what the caches saved.
    """

    stats: Stats

    def capabilities(self) -> Capabilities: ...

    def count_tokens(self, turns: Sequence[Turn]) -> int: ...

    def stream(self, turns: Sequence[Turn], options: GenerationOptions) -> Iterator[Event]: ...

    def prepare(
        self,
        media: Sequence[Image | Audio],
        report: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_plan: Plan | None = None,
    ) -> bool:
        """Encode media ahead of the turn that holds them; any thread may call it (the engine lets
        one thread at a time into the model). False when `should_stop` ended it early. `on_plan`
        hears their costs before the first encode begins (what `costs` would say, at no extra cost)."""
        ...

    def costs(self, media: Sequence[Image | Audio]) -> list[MediaCost]:
        """Tokens per medium and whether its encoding is kept; nothing is encoded."""
        ...

    def holds(self, medium: Image | Audio) -> bool:
        """Whether the engine keeps this medium's encoding, so that a later request may give it as
        `Image.without_pixels()` (a server is sent the pixels every time: never)."""
        ...

    def prompt(self, turns: Sequence[Turn]) -> str | None:
        """The prompt text as the model gets it, each medium as MEDIA_MARKER; None where a server
        renders it."""
        ...

    def save_state(self, *, disk: bool = True) -> bool:
        """Keep the KV state of the sequence as it stands (the last prompt and answer), so a later
        request continuing it, in this process or (disk) another, restores it instead of evaluating
        it again; False when nothing was kept (a server keeps its own)."""
        ...

    def close(self) -> None: ...
