"""Encoded media (the projector's embeddings) kept by content hash: in memory for the latest
prompt (`EmbeddingCache`), and on disk (`DiskMediaCache`), so a new process (a second `mmchat ask`, `/load`, a batch re-run)
never encodes the same image again: a SigLIP-size encode costs about 80 s on two cores.

An entry is one media chunk's embeddings, keyed by what made them: the projector (its size
and the bytes at both ends, cheap to read on every run, not a hash of the whole file), the
settings that change the encoder's output (image_max_tokens, GPU or CPU, the llama.cpp
build), and the chunk's own key (the content hash of the pixels or samples that reached
libmtmd, which already covers the image and frame size caps and Qwen-VL frame pairs).

diskcache keeps the entries (SQLite for the index, one file per value, safe across processes,
least-recently-used eviction under a size cap). Each value carries its own length and
checksum: a truncated or damaged entry is detected, dropped and encoded again, never used.
A cache that cannot be opened or written is turned off with one notice (logged to `mmchat.engine`),
never fatal.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import sqlite3
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DEFAULT_EMBEDDING_CACHE_BYTES
from ..workingset import WorkingSet
from .kvcache import MediaItem, PromptItem

log = logging.getLogger("mmchat.engine")

_MAGIC = b"MMEC"
_VERSION = 1
_HEADER = struct.Struct("<4sIII16s")  # magic, version, n_tokens, n_embd, blake2b-128 of the payload
_EDGE = 1 << 20  # bytes read from each end of the projector for its identity


def projector_identity(path: str | Path, *settings: object) -> str:
    """A short id of the projector file and the settings that shape its output."""
    path = Path(path)
    h = hashlib.blake2b(digest_size=16)
    size = path.stat().st_size
    h.update(str((size, _VERSION, *settings)).encode())
    with open(path, "rb") as f:
        h.update(f.read(_EDGE))
        if size > 2 * _EDGE:
            f.seek(-_EDGE, 2)
            h.update(f.read(_EDGE))
    return h.hexdigest()


def pack(embeddings: np.ndarray, n_tokens: int, n_embd: int) -> bytes:
    payload = np.ascontiguousarray(embeddings, dtype=np.float32).tobytes()
    return _HEADER.pack(_MAGIC, _VERSION, n_tokens, n_embd, hashlib.blake2b(payload, digest_size=16).digest()) + payload


def unpack(blob: Any, n_tokens: int, n_embd: int) -> np.ndarray | None:
    """The embeddings in `blob`, or None when it is not a whole, matching entry."""
    if not isinstance(blob, bytes) or len(blob) < _HEADER.size:
        return None
    magic, version, tokens, embd, digest = _HEADER.unpack_from(blob)
    payload = memoryview(blob)[_HEADER.size :]
    if (magic, version, tokens, embd) != (_MAGIC, _VERSION, n_tokens, n_embd) or len(payload) != 4 * n_tokens * n_embd:
        return None
    if hashlib.blake2b(payload, digest_size=16).digest() != digest:
        return None
    return np.frombuffer(payload, dtype=np.float32).copy()


class DiskMediaCache:
    """Chunk embeddings of one projector on disk; every failure is a miss, and at most one notice."""

    def __init__(self, directory: str | Path, identity: str, *, max_bytes: int):
        self.directory = Path(directory)
        self.identity = identity
        self._cache: Any = None
        try:
            try:
                self._cache = self._open(max_bytes)
            except sqlite3.DatabaseError as e:  # a damaged index (cache.db cut short): a cache can start again
                _discard(self.directory)
                self._cache = self._open(max_bytes)
                log.info(f"the media cache in {self.directory} was damaged ({e}) and starts afresh")
        except Exception as e:  # OSError, sqlite3 errors, diskcache.Timeout
            self._off(e)

    def _open(self, max_bytes: int) -> Any:
        import diskcache

        self.directory.mkdir(parents=True, exist_ok=True)
        return diskcache.Cache(
            str(self.directory),
            size_limit=max_bytes,
            disk_min_file_size=0,
            eviction_policy="least-recently-used",
            timeout=30,
        )

    def _off(self, error: BaseException) -> None:
        if self._cache is not None:
            try:
                self._cache.close()
            except Exception:
                pass
        self._cache = None
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        log.info(f"the media cache in {self.directory} is off for this run ({reason}): media are encoded as usual")

    def _key(self, chunk_key: str) -> str:
        return f"{self.identity}:{chunk_key}"

    def contains(self, chunk_key: str) -> bool:
        if self._cache is None:
            return False
        try:
            return self._key(chunk_key) in self._cache
        except Exception as e:
            self._off(e)
            return False

    def get(self, chunk_key: str, n_tokens: int, n_embd: int) -> np.ndarray | None:
        if self._cache is None:
            return None
        key = self._key(chunk_key)
        try:
            blob = self._cache.get(key)
        except Exception:  # a value file gone or unreadable: a miss
            blob = None
        if blob is None:
            return None
        embeddings = unpack(blob, n_tokens, n_embd)
        if embeddings is None:  # truncated or damaged: drop it, it is encoded again
            try:
                self._cache.delete(key)
            except Exception:
                pass
        return embeddings

    def put(self, chunk_key: str, embeddings: np.ndarray, n_tokens: int, n_embd: int) -> None:
        if self._cache is None:
            return
        try:
            self._cache.set(self._key(chunk_key), pack(embeddings, n_tokens, n_embd))
            self._cache.cull()  # down to the cap now, not a few entries at a time
        except Exception as e:  # a full disk, a read-only directory
            self._off(e)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None


def _discard(directory: Path) -> None:
    """diskcache's own files in `directory` (its index and the value folders it names 00..ff), nothing else."""
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (directory / name).unlink(missing_ok=True)
    for sub in directory.iterdir():
        if sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name):
            shutil.rmtree(sub, ignore_errors=True)


def open_disk_cache(directory: Path, projector: Path, settings: tuple, max_bytes: int) -> DiskMediaCache:
    """The disk cache for one projector's output under the settings that shape it (and this llama.cpp build)."""
    from importlib import metadata

    identity = projector_identity(projector, *settings, metadata.version("llama-cpp-python"))
    return DiskMediaCache(directory, identity, max_bytes=max_bytes)


def cache_info(directory: str | Path) -> tuple[int, int]:
    """(entries, bytes) of the cache at `directory`, for `mmchat cache`."""
    import diskcache

    with diskcache.Cache(str(directory), disk_min_file_size=0) as cache:
        return len(cache), int(cache.volume())


def clear_cache(directory: str | Path) -> int:
    """Remove every entry; how many there were."""
    import diskcache

    with diskcache.Cache(str(directory), disk_min_file_size=0) as cache:
        return int(cache.clear())


class EmbeddingCache:
    """Encoded media embeddings of the latest prompt (and of media encoded ahead of the next one),
    bounded in bytes; behind it, optionally, the disk cache that outlives the process
    (`DiskMediaCache` above). `settle` after each prompt drops the rest (mmchat/workingset.py)."""

    def __init__(self, max_bytes: float = DEFAULT_EMBEDDING_CACHE_BYTES, disk: DiskMediaCache | None = None):
        self._items: WorkingSet[str, np.ndarray] = WorkingSet(max_bytes, lambda v: v.nbytes)
        self.disk = disk

    @property
    def max_bytes(self) -> float:
        return self._items.max_bytes

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
