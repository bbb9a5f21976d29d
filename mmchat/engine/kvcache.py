"""What the KV cache holds: the prompt as items, and the prefix two prompts share.

A prompt is a list of items: text token ids and media chunks. Two prompts share a prefix
item by item; a media chunk matches only the same content (its key is the pixels' or
samples' hash plus its place among that media's chunks), so an edited image never reuses
the old one's cache.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import Any, Callable, Union


@dataclasses.dataclass(eq=False)
class MediaItem:
    key: str
    kind: str  # "image" | "audio"
    n_tokens: int
    n_pos: int
    chunk: Any = None  # an owned mtmd_input_chunk copy while the item is being evaluated
    placeholder: bool = False  # tokenized without pixels: only its cached embeddings can fill it
    _free: Any = dataclasses.field(default=None, repr=False)

    def own(self, chunk: Any, free: Callable[[Any], None]) -> "MediaItem":
        """Take ownership of a libmtmd chunk copy; it is freed with this item."""
        self.chunk = chunk
        self._free = weakref.finalize(self, free, chunk)
        return self

    def detached(self) -> "MediaItem":
        """The same identity without the native chunk, to remember what the cache holds."""
        return MediaItem(self.key, self.kind, self.n_tokens, self.n_pos)

    def same_as(self, other: Any) -> bool:
        return isinstance(other, MediaItem) and (self.key, self.n_tokens, self.n_pos) == (
            other.key,
            other.n_tokens,
            other.n_pos,
        )


PromptItem = Union[int, MediaItem]


def n_tokens(items: Sequence[PromptItem]) -> int:
    """The tokens the items take (a media chunk its token count)."""
    return sum(i.n_tokens if isinstance(i, MediaItem) else 1 for i in items)


def common_prefix(cached: list[PromptItem], new: list[PromptItem]) -> int:
    """How many leading items of `new` are already in the cache, in the same order."""
    n = 0
    for a, b in zip(cached, new):
        if isinstance(a, MediaItem):
            if not a.same_as(b):
                break
        elif isinstance(b, MediaItem) or a != b:
            break
        n += 1
    return n
