"""Saved KV states: a sequence's KV cells and the prompt items they hold, kept in memory and on disk,
so a conversation continued later (a new `mmchat ask --continue`, `/load`, another request of a
server) restores its prefix instead of evaluating it again.

What a state is: `llama_state_seq_get_data`'s bytes for sequence 0 (the KV cells, with their
positions, M-RoPE's x/y included: media embeddings are already inside, nothing of libmtmd is
needed) and, beside them, mmchat's own `PromptItem`s (engine/kvcache.py), which llama.cpp's state
does not record: which cells were media, and so the positions a restored prefix ends at.

Loading a state checks shapes only (layers, cells, K/V types): a state of another model with the
same shapes loads and decodes garbage. So every state carries an identity (`state_identity`): the
model and projector files, the context settings that change the KV (K/V types, flash attention,
swa_full, image min/max tokens, n_ctx), where the layers run, the llama.cpp build and this format's
version. A state is only ever looked up under its own identity, and a file's header and checksum
are checked before llama.cpp sees a byte.

The seam (the CLI uses the disk tier; `mmchat serve` adds the memory tier for alternating
conversations):

    store = StateStore(memory=MemoryStates(512 << 20), disk=DiskStates(config.kv_state_dir(), 2 << 30))
    engine = LlamaCppEngine(model, mmproj, states=store)   # or Runner(..., states=store)
    engine.stream(turns, options)   # restores the longest saved prefix of this prompt by itself
    engine.save_state(disk=False)   # the sequence as it stands (prompt + answer) into the memory tier
    engine.save_state()             # ... and to disk (what `ask` with the log on and `chat` do)

Both tiers keep `Saved` values under the same identity and answer `best(identity, items)`: the
saved state sharing the longest prefix with a prompt. A state whose items are a prefix of a newer
one is dropped (the newer covers it), so a conversation keeps one state, its latest turn. Each
tier is bounded in bytes, least recently used first out.

Disk files are written whole (a temp file renamed over the name: a SIGKILL leaves only a temp
file, which no lookup reads and a later save removes), carry a checksum (so no fsync is needed: a
file cut by a power loss fails it), and any file that does not check out is a miss: deleted, one
debug line on the `mmchat.engine` logger (what -v shows), the prompt evaluated as usual.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import logging
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .kvcache import MediaItem, PromptItem, common_prefix, n_tokens

log = logging.getLogger("mmchat.engine")

FORMAT_VERSION = 1
SUFFIX = ".kvs"
_MAGIC = b"MMKV"
# magic, version, identity (16 bytes), sha256 of items + data (first 16 bytes), n_tokens, items length, data length
_HEADER = struct.Struct("<4sI16s16sIQQ")
_KINDS = ("image", "audio")
_STALE_TEMP_SECONDS = 3600  # a temp file this old was left by a killed writer


def state_identity(files: Sequence[Path | None], settings: Sequence[object]) -> str:
    """What a state is only valid for: the files (each by size and its first and last MiB, as the
    media cache names a projector) and the settings that change the KV; 32 hex digits."""
    from .embeddings import projector_identity

    h = hashlib.blake2b(digest_size=16)
    h.update(repr((FORMAT_VERSION, tuple(settings))).encode())
    for f in files:
        h.update((projector_identity(f) if f is not None else "-").encode())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Saved:
    """One sequence's KV state and the items it holds, in order."""

    identity: str
    items: tuple[PromptItem, ...]
    data: bytes

    @property
    def n_tokens(self) -> int:
        return n_tokens(self.items)

    @property
    def name(self) -> str:
        """Identity and content: equal items under one identity are one state."""
        return f"{self.identity}-{hashlib.blake2b(encode_items(self.items), digest_size=16).hexdigest()}"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A saved state that shares `matched` leading items with a prompt; `load()` reads it (None: gone or
    damaged); `discard(why)` removes it when llama.cpp refuses what it holds."""

    matched: int
    load: Callable[[], Saved | None]
    discard: Callable[[str], None] = lambda why: None


def _is_prefix(short: Sequence[PromptItem], long: Sequence[PromptItem]) -> bool:
    return len(short) <= len(long) and common_prefix(list(short), list(long)) == len(short)


# -- items as bytes ------------------------------------------------------------------


def encode_items(items: Sequence[PromptItem]) -> bytes:
    """Runs of token ids as int32 arrays ("T"), media as their identity ("M")."""
    out: list[bytes] = []
    run: list[int] = []
    for item in [*items, None]:
        if isinstance(item, int):
            run.append(item)
            continue
        if run:
            out += [b"T", struct.pack("<I", len(run)), np.asarray(run, dtype="<i4").tobytes()]
            run = []
        if isinstance(item, MediaItem):
            key = item.key.encode()
            out += [b"M", struct.pack("<HBII", len(key), _KINDS.index(item.kind), item.n_tokens, item.n_pos), key]
    return b"".join(out)


def decode_items(blob: bytes) -> list[PromptItem] | None:
    """The items `encode_items` wrote, or None when the bytes are not such a list."""
    items: list[PromptItem] = []
    at, view = 0, memoryview(blob)
    try:
        while at < len(blob):
            tag, at = blob[at : at + 1], at + 1
            if tag == b"T":
                (count,) = struct.unpack_from("<I", blob, at)
                at += 4
                if at + 4 * count > len(blob):
                    return None
                items += np.frombuffer(view[at : at + 4 * count], dtype="<i4").tolist()
                at += 4 * count
            elif tag == b"M":
                size, kind, tokens, pos = struct.unpack_from("<HBII", blob, at)
                at += struct.calcsize("<HBII")
                key = bytes(view[at : at + size]).decode()
                at += size
                items.append(MediaItem(key, _KINDS[kind], tokens, pos))
            else:
                return None
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
    return items


# -- the tiers -----------------------------------------------------------------------


class MemoryStates:
    """Saved states in this process, bounded in bytes, least recently used first out (`mmchat serve`)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._states: collections.OrderedDict[str, Saved] = collections.OrderedDict()
        self._lock = threading.Lock()

    def best(self, identity: str, items: Sequence[PromptItem]) -> Candidate | None:
        with self._lock:
            mine = [s for s in self._states.values() if s.identity == identity]
        found = max(((common_prefix(list(s.items), list(items)), s) for s in mine), default=None, key=lambda x: x[0])
        if not found or found[0] == 0:
            return None
        return Candidate(found[0], lambda s=found[1]: self._touch(s), lambda why, s=found[1]: self._drop(s))

    def _drop(self, saved: Saved) -> None:
        with self._lock:
            self._states.pop(saved.name, None)

    def _touch(self, saved: Saved) -> Saved | None:
        with self._lock:
            if saved.name in self._states:
                self._states.move_to_end(saved.name)
                return saved
        return None

    def put(self, saved: Saved) -> bool:
        if len(saved.data) > self.max_bytes:
            return False
        with self._lock:
            for name, old in list(self._states.items()):
                if old.identity == saved.identity and _is_prefix(old.items, saved.items):
                    del self._states[name]
            self._states[saved.name] = saved
            while sum(len(s.data) for s in self._states.values()) > self.max_bytes:
                self._states.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._states)


class DiskStates:
    """Saved states as files in one directory, `IDENTITY-CONTENT.kvs`, bounded in bytes (least recently
    used first out, by mtime, which a restore refreshes). Every failure is a miss and a debug line."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        max_entry_bytes: int | None = None,
    ):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 2 if max_entry_bytes is None else max_entry_bytes

    def _ignore(self, path: Path, why: str) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        log.debug(f"ignored the saved KV state {path.name} ({why}): the prompt is evaluated as usual")

    def _read_head(self, f, identity: str) -> tuple[bytes, list[PromptItem], int, int] | None:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        magic, version, ident, digest, tokens, items_len, data_len = _HEADER.unpack(head)
        if (magic, version, ident) != (_MAGIC, FORMAT_VERSION, bytes.fromhex(identity)) or items_len > 1 << 30:
            return None
        items = decode_items(f.read(items_len))
        if items is None or n_tokens(items) != tokens:
            return None
        return digest, items, items_len, data_len

    def best(self, identity: str, items: Sequence[PromptItem]) -> Candidate | None:
        found: tuple[int, Path, list[PromptItem]] | None = None
        for path in self.directory.glob(f"{identity}-*{SUFFIX}"):
            try:
                with open(path, "rb") as f:
                    head = self._read_head(f, identity)
            except OSError:  # removed meanwhile by another process: not there
                continue
            if head is None:
                self._ignore(path, "not a whole state of this model and these settings")
                continue
            matched = common_prefix(head[1], list(items))
            if matched and (found is None or matched > found[0]):
                found = (matched, path, head[1])
        if found is None:
            return None
        return Candidate(
            found[0], lambda p=found[1]: self.load(p, identity), lambda why, p=found[1]: self._ignore(p, why)
        )

    def load(self, path: Path, identity: str) -> Saved | None:
        """The state in `path`, checked whole (header, lengths, checksum); None when it is not."""
        try:
            with open(path, "rb") as f:
                head = self._read_head(f, identity)
                if head is None:
                    self._ignore(path, "not a whole state of this model and these settings")
                    return None
                digest, items, items_len, data_len = head
                f.seek(_HEADER.size)
                body = f.read(items_len + data_len + 1)
        except OSError:
            return None
        if len(body) != items_len + data_len or _digest(body) != digest:
            self._ignore(path, "cut short or damaged")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return Saved(identity, tuple(items), body[items_len:])

    def put(self, saved: Saved) -> bool:
        """Write `saved` whole (temp file renamed); drop the states it covers; keep under the cap."""
        items = encode_items(saved.items)
        if len(items) + len(saved.data) + _HEADER.size > self.max_entry_bytes:
            return False
        body_digest = _digest(items, saved.data)
        head = _HEADER.pack(
            _MAGIC,
            FORMAT_VERSION,
            bytes.fromhex(saved.identity),
            body_digest,
            saved.n_tokens,
            len(items),
            len(saved.data),
        )
        path = self.directory / f"{saved.name}{SUFFIX}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_whole(path, (head, items, saved.data))
        except OSError as e:
            log.debug(f"the KV state was not saved in {self.directory} ({e.strerror or e})")
            return False
        self._drop_covered(saved, path)
        self.evict()
        return True

    def _drop_covered(self, saved: Saved, kept: Path) -> None:
        for path in self.directory.glob(f"{saved.identity}-*{SUFFIX}"):
            if path == kept:
                continue
            try:
                with open(path, "rb") as f:
                    head = self._read_head(f, saved.identity)
            except OSError:
                continue
            if head is not None and _is_prefix(head[1], saved.items):
                with contextlib.suppress(OSError):
                    path.unlink()

    def entries(self) -> list[tuple[Path, os.stat_result]]:
        """Every state file, newest use first."""
        found = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            with contextlib.suppress(OSError):
                found.append((path, path.stat()))
        return sorted(found, key=lambda e: e[1].st_mtime, reverse=True)

    def evict(self) -> None:
        """Down to the cap, least recently used first; temp files of killed writers go too."""
        now = time.time()
        for tmp in self.directory.glob(f".*{SUFFIX}.*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _STALE_TEMP_SECONDS:
                    tmp.unlink()
        total = 0
        for path, st in self.entries():
            total += st.st_size
            if total > self.max_bytes:
                with contextlib.suppress(OSError):
                    path.unlink()

    def info(self) -> tuple[int, int]:
        """(states, bytes), for `mmchat cache`."""
        found = self.entries()
        return len(found), sum(st.st_size for _, st in found)

    def clear(self) -> int:
        """Remove every state (and any temp file); how many states there were."""
        n = 0
        for path in [*self.directory.glob(f"*{SUFFIX}"), *self.directory.glob(f".*{SUFFIX}.*.tmp")]:
            with contextlib.suppress(OSError):
                path.unlink()
                n += path.suffix == SUFFIX
        return n


def _digest(*parts: bytes) -> bytes:
    """sha256 (hardware-accelerated on most CPUs: twice blake2b's speed here), first 16 bytes."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()[:16]


def _write_whole(path: Path, parts: Sequence[bytes]) -> None:
    """A temp file renamed over `path`: a killed writer leaves only the temp file. No fsync: a file
    the OS lost part of in a power cut fails its checksum and is ignored, as any damaged one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class StateStore:
    """The tiers together: a lookup asks both and takes the longer prefix; a save goes to memory, and to disk."""

    def __init__(self, *, memory: MemoryStates | None = None, disk: DiskStates | None = None, min_tokens: int = 0):
        self.memory = memory
        self.disk = disk
        self.min_tokens = min_tokens  # shorter sequences are not worth a state

    def best(self, identity: str, items: Sequence[PromptItem]) -> Candidate | None:
        found = [t.best(identity, items) for t in (self.memory, self.disk) if t is not None]
        return max((c for c in found if c is not None), key=lambda c: c.matched, default=None)

    def put(self, saved: Saved, *, disk: bool = True) -> bool:
        if saved.n_tokens < self.min_tokens:
            return False
        kept = self.memory.put(saved) if self.memory is not None else False
        if disk and self.disk is not None:
            kept = self.disk.put(saved) or kept
        return kept
