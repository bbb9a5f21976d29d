"""What the KV cache holds, and encoded media kept by content hash.

A prompt is a list of items: text token ids and media chunks. Two prompts share a prefix
item by item; a media chunk matches only the same content (its key is the pixels' or
samples' hash plus its place among that media's chunks), so an edited image never reuses
the old one's cache.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Union

import numpy as np

from ..config import DEFAULT_EMBEDDING_CACHE_BYTES
from ..workingset import WorkingSet


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


class EmbeddingCache:
    """Encoded media embeddings of the latest prompt (and of media encoded ahead of the next one),
    bounded in bytes; behind it, optionally, the disk cache that outlives the process
    (engine/mediacache.py). `settle` after each prompt drops the rest (mmchat/workingset.py)."""

    def __init__(self, max_bytes: int = DEFAULT_EMBEDDING_CACHE_BYTES, disk: Any = None):
        self._items: WorkingSet[str, np.ndarray] = WorkingSet(max_bytes, lambda v: v.nbytes)
        self.disk = disk

    @property
    def max_bytes(self) -> float:
        return self._items.max_bytes

    @max_bytes.setter
    def max_bytes(self, value: float) -> None:
        self._items.max_bytes = value

    @property
    def nbytes(self) -> int:
        return self._items.nbytes

    def get(self, key: str) -> np.ndarray | None:
        return self._items.get(key)

    def load(self, key: str, n_tokens: int, n_embd: int) -> np.ndarray | None:
        """From memory, else from disk (then kept in memory too); None when neither has it whole."""
        value = self.get(key)
        if value is None and self.disk is not None:
            value = self.disk.get(key, n_tokens, n_embd)
            if value is not None:
                self._items.put(key, value)
        return value

    def put(self, key: str, value: np.ndarray, n_tokens: int, n_embd: int) -> None:
        self._items.put(key, value)
        if self.disk is not None:
            self.disk.put(key, value, n_tokens, n_embd)

    def settle(self, prompt: list[PromptItem]) -> None:
        """`prompt` is evaluated: keep the embeddings of its media (a follow-up whose prefix differs,
        a window moved on, evaluates them again) and what was encoded for the next; drop the rest."""
        self._items.touch(i.key for i in prompt if isinstance(i, MediaItem))
        self._items.settle()

    def __len__(self) -> int:
        return len(self._items)

    def has(self, key: str) -> bool:
        return key in self._items or (self.disk is not None and self.disk.contains(key))

    def has_media(self, digest: str) -> bool:
        """Whether the first chunk of this media's embeddings is kept (in memory or on disk)."""
        return self.has(f"{digest}#0")
