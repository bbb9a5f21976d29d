"""Embeddings for media chunks: kept in memory, kept on disk, or encoded by libmtmd now.

The one place an encode happens, whether for the turn being evaluated or ahead of it (the
REPL encodes an attachment while the user types): both land in both caches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import GenerationError
from . import _lib
from ._lib import mtmd
from .base import Stats
from .embeddings import EmbeddingCache
from .encodemeter import EncodeMeter
from .kvcache import MediaItem


class Stopped(Exception):
    """An encode was cancelled: Ctrl-C, or a background encode no longer wanted."""


class MediaEncoder:
    def __init__(self, mtmd_ctx, n_embd: int, cache: EmbeddingCache, stats: Stats, meter: EncodeMeter):
        self._mtmd, self.n_embd = mtmd_ctx, n_embd
        self.cache, self.stats, self.meter = cache, stats, meter

    def lookup(self, item: MediaItem) -> np.ndarray | None:
        """The chunk's embeddings from memory or disk, if they are kept whole."""
        in_memory = self.cache.get(item.key)
        if in_memory is not None:
            return in_memory
        found = self.cache.load(item.key, item.n_tokens, self.n_embd)
        if found is not None:
            self.stats.media_disk_hits += 1
        return found

    def encode(
        self,
        item: MediaItem,
        report: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Encode the chunk and keep the result; Stopped when Ctrl-C or `should_stop` ended it early."""
        self.meter.start(item.n_tokens, report, should_stop)
        with self.meter.interruptible():
            rc = mtmd.mtmd_encode_chunk(self._mtmd, item.chunk)
        self.meter.finish(item.n_tokens)
        if self.meter.cancelled:
            raise Stopped
        if rc != 0:
            raise GenerationError(f"llama.cpp failed to encode {item.kind} ({_lib.last_error() or 'see -v'})")
        out = mtmd.mtmd_get_output_embd(self._mtmd)
        embd = np.ctypeslib.as_array(out, shape=(item.n_tokens * self.n_embd,)).copy()
        self.cache.put(item.key, embd, item.n_tokens, self.n_embd)
        self.stats.media_encodes += 1
        return embd
