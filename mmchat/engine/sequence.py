"""Evaluating a prompt: the one llama.cpp sequence, what its KV cache holds, and how a prompt gets in.

The KV cache holds the last prompt and answer as items (text token ids and media chunks, in
order: engine/kvcache.py). A new prompt keeps the prefix it shares with them, or with a saved
state that covers more (engine/restoring.py), and evaluates only the rest: text in batches,
media from their kept embeddings or encoded now (engine/encoder.py). Generating
(engine/generating.py) extends the same sequence token by token.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import GenerationError
from . import _lib
from ._lib import llama, mtmd
from .base import Progress, Stats, Timings, Usage
from .embeddings import EmbeddingCache
from .encoder import MediaEncoder, Stopped
from .kvcache import MediaItem, PromptItem, common_prefix, n_tokens

_NO_CALLBACK = ctypes.cast(None, mtmd.mtmd_helper_post_decode_callback)  # type: ignore[arg-type]

#: restore(items, keep): how many leading items the KV holds after a saved state that covers more was loaded
Restore = Callable[[list[PromptItem], int], int]


class Evicted(Exception):
    """A placeholder chunk's embeddings left the cache before it was evaluated."""


def n_pos(item: PromptItem) -> int:
    """Positions an item takes in the sequence (an M-RoPE image fewer than its tokens)."""
    return item.n_pos if isinstance(item, MediaItem) else 1


class KVSequence:
    """Sequence 0 of a llama.cpp context: `items` is what its KV cache holds, `n_past` the next position.
    Every caller holds the engine's lock."""

    def __init__(
        self,
        ctx: Any,
        mtmd_ctx: Any,
        n_batch: int,
        encoder: MediaEncoder,
        stats: Stats,
        progress: Progress | None = None,
    ):
        self.ctx, self._mtmd, self.n_batch = ctx, mtmd_ctx, n_batch
        self.encoder, self.stats, self.progress = encoder, stats, progress
        self.items: list[PromptItem] = []
        self.n_past = 0

    @property
    def embeddings(self) -> EmbeddingCache:
        return self.encoder.cache

    def evaluate(self, items: list[PromptItem], usage: Usage, timings: Timings, restore: Restore) -> None:
        """Bring the KV cache to `items`, the last one's logits ready: the shared prefix is kept, the rest
        evaluated. Evicted when a placeholder's embeddings are gone (tokenize with pixels and call again)."""
        t0 = time.perf_counter()
        keep = restore(items, common_prefix(self.items, items))
        if keep == len(items):  # the whole prompt is cached: re-evaluate the last piece for its logits
            keep -= 1
        self.truncate(keep)
        usage.cached_tokens = n_tokens(items[:keep])
        self.stats.prompt_tokens_reused += usage.cached_tokens
        pending: list[int] = []
        to_encode = [i for i in items[keep:] if isinstance(i, MediaItem) and not self.embeddings.has(i.key)]
        for item in items[keep:]:
            if isinstance(item, MediaItem):
                self.decode_text(pending, logits_last=False)
                pending = []
                timings.media_encode += self._media(item, to_encode, usage)
            else:
                pending.append(item)
        self.decode_text(pending, logits_last=True)
        timings.prompt = time.perf_counter() - t0 - timings.media_encode
        self.stats.prompt_tokens_evaluated += usage.prompt_tokens - usage.cached_tokens
        if not pending:  # a prompt that ends in media (no template does) has no logits yet
            raise GenerationError("the prompt ends with a media chunk; add text after it")

    def _media(self, item: MediaItem, to_encode: list[MediaItem], usage: Usage) -> float:
        """One media chunk into the sequence; its encode (if it needs one) reported as progress."""
        progress, task = self.progress, None
        if progress is not None and item in to_encode:
            task = f"encoding {item.kind} {to_encode.index(item) + 1} of {len(to_encode)}"
            progress(task, 0, 1)
        report = (lambda f, task=task: progress(task, f, 1)) if task and progress else None
        spent = self.decode_media(item, report, usage)
        if task and progress:
            progress(task, 1, 1)
        return spent

    def truncate(self, keep: int) -> None:
        """Keep the first `keep` items in the KV cache (all of it goes when llama.cpp cannot cut it there)."""
        pos = sum(n_pos(i) for i in self.items[:keep])
        mem = llama.llama_get_memory(self.ctx)
        if not llama.llama_memory_seq_rm(mem, 0, pos, -1):
            llama.llama_memory_clear(mem, True)
            keep, pos = 0, 0
        del self.items[keep:]
        self.n_past = pos

    def decode_text(self, tokens: list[int], *, logits_last: bool) -> None:
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            last = logits_last and start + len(part) == len(tokens)
            rc = _lib.decode_tokens(self.ctx, part, self.n_past, logits_last=last)
            if rc != 0:
                self.fail(f"llama.cpp failed to evaluate the prompt (code {rc})")
            self.n_past += len(part)
            self.items.extend(part)

    def decode_media(self, item: MediaItem, report: Callable[[float], None] | None, usage: Usage) -> float:
        """The chunk's embeddings (kept, else encoded now) into the sequence; the seconds it took."""
        t0 = time.perf_counter()
        embd = self.encoder.lookup(item)
        if embd is None and item.placeholder:
            raise Evicted(item.key)
        if embd is None:
            try:
                embd = self.encoder.encode(item, report)
                usage.encoded_media += 1
            except Stopped:  # Ctrl-C: what is evaluated so far stays valid
                self.truncate(len(self.items))
                raise KeyboardInterrupt from None
            except GenerationError as e:
                self.fail(str(e))
        new_n_past = llama.llama_pos(self.n_past)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd,
            self.ctx,
            item.chunk,
            embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            self.n_past,
            0,
            self.n_batch,
            ctypes.byref(new_n_past),
            _NO_CALLBACK,
            None,
        )
        if rc != 0:
            self.fail(f"llama.cpp failed to decode {item.kind} embeddings (code {rc})")
        self.n_past = new_n_past.value
        self.items.append(item.detached())
        return time.perf_counter() - t0

    def step(self, tokens: list[int], *, logits_all: bool = False) -> None:
        """Evaluate generated tokens at the end of the sequence (with `logits_all`, a draft to check:
        the caller then `accept`s what it keeps)."""
        if _lib.decode_tokens(self.ctx, tokens, self.n_past, logits_last=True, logits_all=logits_all) != 0:
            self.fail("llama.cpp failed while generating (code != 0)")
        if not logits_all:
            self.n_past += len(tokens)
            self.items.extend(tokens)

    def accept(self, tokens: list[int], evaluated: int) -> None:
        """Of `evaluated` tokens just stepped with `logits_all`, the leading `tokens` stay; the rest leave."""
        self.n_past += len(tokens)
        self.items.extend(tokens)
        if len(tokens) < evaluated:
            llama.llama_memory_seq_rm(llama.llama_get_memory(self.ctx), 0, self.n_past, -1)

    def fail(self, message: str) -> NoReturn:
        self.truncate(0)  # the KV state is unknown now: start clean next time
        raise GenerationError(message)

    def clear(self) -> None:
        self.items.clear()
