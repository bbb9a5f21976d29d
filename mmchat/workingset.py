"""What a cache keeps between requests: what the latest request used, and nothing older.

A follow-up sends the whole conversation again, so the media it can use again are exactly
those of the request before it (the REPL sends only the turns still in the context window);
media that left the conversation, and every request of a batch once it is answered, are of
no more use in memory (the disk cache of encoded media is behind them for a later run). A
byte cap still bounds one huge request, least recently used first out, but no workload has
to reach it to stay flat.

Values put or read since the last `settle()` are the ones in use; `settle()` ends a request
and drops the rest. Something prepared ahead of the request that will use it (a REPL
attachment, decoded and encoded while the user types) is in use from the moment it is put,
so it lives until the request after it has settled.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WorkingSet(Generic[K, V]):
    """Values by key, bounded in bytes (least recently used out first), pruned to what is in use."""

    def __init__(self, max_bytes: float, size: Callable[[V], int] = lambda value: 0):
        self.max_bytes = max_bytes
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._used: set[K] = set()  # put or read since the last settle()
        self.nbytes = 0
        self._lock = threading.Lock()  # batch workers and the REPL's background encodes share one

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self._used.add(key)
            return value

    def peek(self, key: K) -> V | None:
        """The value, without counting it as in use."""
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key in self._items:
                self.nbytes -= self._size(self._items.pop(key))
            self._items[key] = value
            self.nbytes += self._size(value)
            self._used.add(key)
            while self.nbytes > self.max_bytes and len(self._items) > 1:
                old, gone = self._items.popitem(last=False)
                self.nbytes -= self._size(gone)
                self._used.discard(old)

    def replace(self, key: K, expected: V, value: V) -> None:
        """`value` for `key`, if it still holds `expected` (a lazily computed form of the same thing)."""
        with self._lock:
            if self._items.get(key) is expected:
                self.nbytes += self._size(value) - self._size(expected)
                self._items[key] = value

    def pop(self, key: K) -> V | None:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self.nbytes -= self._size(value)
                self._used.discard(key)
            return value

    def touch(self, keys: Iterable[K]) -> None:
        """Mark kept values as in use without reading them (a request that found them elsewhere)."""
        with self._lock:
            self._used.update(k for k in keys if k in self._items)

    def settle(self) -> None:
        """A request is done: drop what it did not use (and what was not put for the next one)."""
        with self._lock:
            for key in [k for k in self._items if k not in self._used]:
                self.nbytes -= self._size(self._items.pop(key))
            self._used = set()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._used = set()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._items))
