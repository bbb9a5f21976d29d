"""Processes that write mmchat's disk state as fast as they can until they are killed.

`python -m tests.support.faultwriters KIND PATH TAG` prints "go" after its first write, then keeps
writing; tests/test_faults.py SIGKILLs it at varied moments (or runs two at once) and checks
what the next run reads. Every value written is a pure function of (TAG, i), so a reader can
tell a whole value from a cut or mixed one.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

N_EMBD = 16


def history_entry(tag: str, i: int) -> str:
    """Up to ~15 kB over 1-5 lines: big entries take many pages, so a kill can land mid-write."""
    return f"{tag}{i}:" + "\n".join("y" * ((i * 7919 + k) % 3000) for k in range(i % 5 + 1))


def conversation_text(tag: str, i: int) -> str:
    return f"{tag}{i}:" + "z" * ((i * 7919) % 150_000)


def embedding(tag: str, i: int) -> np.ndarray:
    n_tokens = 1 + (i * 37) % 512  # 64 B .. 32 kB a value
    seed = sum(map(ord, tag)) * 1_000_003 + i
    return np.arange(n_tokens * N_EMBD, dtype=np.float32).reshape(n_tokens, N_EMBD) + np.float32(seed % 65536)


def _history(path: Path, tag: str) -> None:
    from mmchat.chat.history import SafeFileHistory

    i = 0
    while True:
        SafeFileHistory(path, print).store_string(history_entry(tag, i))
        _started(i)
        i += 1


def _conversation(path: Path, tag: str) -> None:
    from mmchat.chat import files
    from mmchat.chat.conversation import Conversation

    i = 0
    while True:
        files.save(Conversation(None, [{"role": "user", "content": conversation_text(tag, i)}]), path)
        _started(i)
        i += 1


def _media_cache(path: Path, tag: str) -> None:
    from mmchat.engine.embeddings import DiskMediaCache

    notices = logging.StreamHandler(sys.stderr)  # what the cache tells the user, marked for the test to find
    notices.setFormatter(logging.Formatter("NOTICE %(message)s"))
    logging.getLogger("mmchat.engine").addHandler(notices)
    logging.getLogger("mmchat.engine").setLevel(logging.INFO)
    cache = DiskMediaCache(path, "faults", max_bytes=1 << 30)
    i = 0
    while True:
        value = embedding(tag, i)
        cache.put(f"{tag}{i}", value, len(value), N_EMBD)
        back = embedding(tag, i // 2)  # read while writing, as a second REPL would
        got = cache.get(f"{tag}{i // 2}", len(back), N_EMBD)
        if got is not None and not np.array_equal(got.reshape(back.shape), back):
            print(f"BAD entry {tag}{i // 2}", file=sys.stderr)
            sys.exit(3)
        _started(i)
        i += 1


def _started(i: int) -> None:
    if i == 0:
        print("go", flush=True)


WRITERS = {"history": _history, "conversation": _conversation, "media-cache": _media_cache}

if __name__ == "__main__":
    kind, path, tag = sys.argv[1:4]
    WRITERS[kind](Path(path), tag)
