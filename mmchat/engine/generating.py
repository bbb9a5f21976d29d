"""Generating: tokens sampled after an evaluated prompt, each fed back into the same sequence,
turned into text deltas (engine/textstream.py) until an end-of-generation token, a stop string,
`max_tokens` or a full context. Greedy answers may be drafted from the prompt (engine/drafts.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..options import GenerationOptions
from . import _lib
from ._lib import llama
from .base import Event, Finished, Started, Timings, Usage
from .drafts import GAP, PromptLookup
from .kvcache import MediaItem
from .sequence import KVSequence
from .textstream import TextStream

#: a token to emit, and whether the KV cache holds it already (an accepted draft) or not (the model's pick)
Ahead = list[tuple[int, bool]]


class Generator:
    """Samples the answer into `seq`: one thread at a time under `lock`, released between tokens."""

    def __init__(
        self,
        seq: KVSequence,
        vocab: Any,
        lock: threading.RLock,
        n_ctx: int,
        extra_stop: tuple[str, ...] = (),
        draft: int = 0,
        draft_min: int = 2,
    ):
        self.seq, self.vocab, self.lock, self.n_ctx = seq, vocab, lock, n_ctx
        self.n_vocab = llama.llama_vocab_n_tokens(vocab)
        self.extra_stop = extra_stop  # what the chat template ends a turn with, besides EOG tokens
        self.draft, self.draft_min = draft, draft_min  # prompt-lookup drafting of greedy answers (drafts.py)

    def run(
        self, options: GenerationOptions, grammar: str | None, usage: Usage, timings: Timings, t_start: float
    ) -> Iterator[Event]:
        """`Started`, the text deltas, then `Finished` with the generated token ids."""
        sampler = _lib.make_sampler(self.vocab, options, grammar)
        text = TextStream(tuple(options.stop) + self.extra_stop)
        finish, tokens = "length", list[int]()
        greedy = options.plain_greedy  # once, not per token
        lookup = self._lookup() if greedy and self.draft else None
        ahead: Ahead = []
        t0 = time.perf_counter()
        try:
            yield Started(usage, timings)
            for emitted in range(options.max_tokens):
                with self.lock:
                    token, in_cache = self._next(ahead, greedy, sampler)
                    if token is None:
                        break
                    if llama.llama_vocab_is_eog(self.vocab, token) and not options.ignore_eos:
                        finish = "stop"
                        break
                    usage.completion_tokens += 1
                    tokens.append(token)
                    delta = text.feed(_lib.token_bytes(self.vocab, token))
                if delta:
                    timings.first_token = timings.first_token or time.perf_counter() - t_start
                    yield delta
                if text.stopped:
                    finish = "stop"
                    break
                if not in_cache:
                    with self.lock:
                        ahead = self._advance(token, lookup, options.max_tokens - emitted - 1, usage)
            tail = text.flush()
            if tail:
                yield tail
        finally:
            llama.llama_sampler_free(sampler)
            timings.generation = time.perf_counter() - t0
        yield Finished(finish_reason=finish, usage=usage, timings=timings, token_ids=tokens)

    def _next(self, ahead: Ahead, greedy: bool, sampler: Any) -> tuple[int | None, bool]:
        """The next token: a checked one waiting, else sampled; None when the context is full."""
        token, in_cache = ahead.pop(0) if ahead else (-1, False)
        if not in_cache and self.seq.n_past >= self.n_ctx:
            return None, False
        if token < 0:
            # greedy with nothing else in the chain: the largest logit, as llama.cpp's greedy sampler picks it
            # (the first of equals), without building a candidate list over the whole vocabulary per token
            token = self._argmax() if greedy else llama.llama_sampler_sample(sampler, self.seq.ctx, -1)
        return token, in_cache

    def _advance(self, token: int, lookup: PromptLookup | None, room: int, usage: Usage) -> Ahead:
        """`token` into the KV cache (with a draft after it when drafting); the tokens checked ahead."""
        if lookup is not None:
            return self._check_draft(token, lookup, room, usage)
        self.seq.step([token])
        return []

    def _argmax(self, i: int = -1) -> int:
        logits = llama.llama_get_logits_ith(self.seq.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(self.n_vocab,))))

    def _lookup(self) -> PromptLookup:
        """The prompt as the KV cache holds it, for drafting (a medium is a gap)."""
        tokens = (GAP if isinstance(i, MediaItem) else i for i in self.seq.items)
        return PromptLookup(tokens, length=self.draft, min_match=self.draft_min)

    def _check_draft(self, token: int, lookup: PromptLookup, room: int, usage: Usage) -> Ahead:
        """Evaluate `token` and a draft after it in one batch; what the model agrees with stays in the
        KV cache. The tokens that follow: the accepted draft (cached), then the model's own next pick."""
        lookup.extend([token])
        draft = lookup.propose(min(room, self.n_ctx - self.seq.n_past - 1))
        self.seq.step([token, *draft], logits_all=True)
        picks = [self._argmax(i) for i in range(len(draft) + 1)]
        kept = next((i for i, (d, p) in enumerate(zip(draft, picks)) if d != p), len(draft))
        self.seq.accept([token, *draft[:kept]], evaluated=1 + len(draft))
        lookup.extend(draft[:kept])
        usage.draft_accepted += kept
        usage.draft_rejected += len(draft) - kept
        return [(d, True) for d in draft[:kept]] + [(picks[kept], False)]
