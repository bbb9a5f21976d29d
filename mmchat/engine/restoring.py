"""What the llama.cpp engine does with saved KV states (engine/kvstate.py holds them): save the
sequence as it stands, and restore the saved state that covers more of a prompt than the live KV
cache does. A mixin of `LlamaCppEngine`, kept apart so the engine's module stays about evaluation."""

from __future__ import annotations

from typing import Any

from . import _lib
from .base import EngineStats
from .kvcache import MediaItem, PromptItem, common_prefix
from .kvstate import Saved, StateStore, n_tokens


class SavedStates:
    """Needs the engine's context, lock, live cache (`_cache`, `_n_past`), identity and stats."""

    states: StateStore | None
    stats: EngineStats
    _ctx: Any
    _lock: Any  # an RLock: one thread at a time in the model
    _cache: list[PromptItem]
    _n_past: int
    _identity: str

    def save_state(self, *, disk: bool = True) -> bool:
        """Keep the sequence as it stands (the last prompt and its answer) in the state store's memory
        tier, and on disk unless `disk=False`, for a later request or process to restore; False when
        nothing was kept (no store, too short, too big)."""
        if self.states is None:
            return False
        with self._lock:
            if n_tokens(self._cache) < self.states.min_tokens:
                return False
            saved = Saved(self._identity, tuple(self._cache), _lib.seq_state(self._ctx))
        kept = self.states.put(saved, disk=disk)  # the file is written outside the lock
        self.stats.states_saved += kept
        return kept

    def _restore(self, items: list[PromptItem], keep: int) -> int:
        """Load the saved state that covers more of `items` than the live cache does, if one does;
        how many leading items the KV holds now. A state that does not load leaves the cache empty.
        Not looked for when what is left to evaluate is shorter than a state worth saving (a follow-up)."""
        if self.states is None or n_tokens(items[keep:]) < self.states.min_tokens:
            return keep
        found = self.states.best(self._identity, items)
        if found is None or found.matched <= keep:
            return keep
        saved = found.load()
        if saved is None:
            return keep
        if not _lib.set_seq_state(self._ctx, saved.data):
            found.discard("llama.cpp refused it")
            self._cache, self._n_past = [], 0
            return 0
        self._cache = list(saved.items)
        self._n_past = sum(_n_pos(i) for i in self._cache)
        self.stats.states_restored += 1
        return common_prefix(self._cache, items)


def _n_pos(item: PromptItem) -> int:
    return item.n_pos if isinstance(item, MediaItem) else 1
