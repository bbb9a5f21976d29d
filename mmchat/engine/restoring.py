"""What the llama.cpp engine does with saved KV states (engine/kvstate.py holds them): save the
sequence as it stands, and restore the saved state that covers more of a prompt than the live KV
cache does."""

from __future__ import annotations

import threading

from . import _lib
from .base import Stats
from .kvcache import PromptItem, common_prefix, n_tokens
from .kvstate import Saved, StateStore
from .sequence import KVSequence, n_pos


class SavedStates:
    """The engine's state store (`store`, None: none) under its identity, for its one sequence."""

    def __init__(self, store: StateStore | None, identity: str, stats: Stats):
        self.store, self.identity, self.stats = store, identity, stats

    def save(self, seq: KVSequence, lock: threading.RLock, *, disk: bool = True) -> bool:
        """Keep the sequence as it stands (the last prompt and its answer) in the state store's memory
        tier, and on disk unless `disk=False`, for a later request or process to restore; False when
        nothing was kept (no store, too short, too big)."""
        if self.store is None:
            return False
        with lock:
            if n_tokens(seq.items) < self.store.min_tokens:
                return False
            saved = Saved(self.identity, tuple(seq.items), _lib.seq_state(seq.ctx))
        kept = self.store.put(saved, disk=disk)  # the file is written outside the lock
        self.stats.states_saved += kept
        return kept

    def restore(self, seq: KVSequence, items: list[PromptItem], keep: int) -> int:
        """Load the saved state that covers more of `items` than the live cache does, if one does;
        how many leading items the KV holds now. A state that does not load leaves the cache empty.
        Not looked for when what is left to evaluate is shorter than a state worth saving (a follow-up)."""
        if self.store is None or n_tokens(items[keep:]) < self.store.min_tokens:
            return keep
        found = self.store.best(self.identity, items)
        if found is None or found.matched <= keep:
            return keep
        saved = found.load()
        if saved is None:
            return keep
        if not _lib.set_seq_state(seq.ctx, saved.data):
            found.discard("llama.cpp refused it")
            seq.items, seq.n_past = [], 0
            return 0
        seq.items = list(saved.items)
        seq.n_past = sum(n_pos(i) for i in seq.items)
        self.stats.states_restored += 1
        return common_prefix(seq.items, items)
