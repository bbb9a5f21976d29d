"""Saved KV states (mmchat/engine/kvstate.py): the store's tiers and files, without a model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmchat.engine.kvcache import MediaItem
from mmchat.engine.kvstate import (
    DiskStates,
    MemoryStates,
    Saved,
    StateStore,
    decode_items,
    encode_items,
)
from tests.support.helpers import invoke, logged

IDENT = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def saved(items, size: int = 1000, identity: str = IDENT, fill: int = 1) -> Saved:
    return Saved(identity, tuple(items), bytes([fill]) * size)


def image(key: str = "abc#0") -> MediaItem:
    return MediaItem(key, "image", 16, 16)


def test_items_survive_bytes_and_noise_is_no_list():
    items = [1, 2, 3, image(), 7, MediaItem("d#1", "audio", 750, 750), 9]
    back = decode_items(encode_items(items))
    assert back[:3] == [1, 2, 3] and back[4] == 7 and back[6] == 9
    assert back[3].same_as(items[3]) and back[5].same_as(items[5]) and back[5].kind == "audio"
    assert decode_items(b"Q" + os.urandom(64)) is None
    assert decode_items(encode_items(items)[:-3]) is None  # cut inside a run of token ids


def test_the_longest_saved_prefix_is_found_and_what_it_covers_is_dropped(tmp_path):
    disk = DiskStates(tmp_path, 1 << 20)
    disk.put(saved([1, 2, 3]))
    disk.put(saved([1, 2, 9, 9]))
    disk.put(saved([1, 2, 3, image(), 5]))  # covers [1, 2, 3]: that file goes
    assert len(list(tmp_path.glob("*.kvs"))) == 2
    found = disk.best(IDENT, [1, 2, 3, image(), 5, 6])
    assert found.matched == 5 and list(found.load().items)[-1] == 5
    assert disk.best(IDENT, [1, 2, 3, image("other#0"), 5]).matched == 3
    assert disk.best(OTHER, [1, 2, 3]) is None  # another model or setting never sees it
    assert disk.best(IDENT, [4]) is None


def test_states_stay_under_the_cap_least_recently_used_first_out(tmp_path):
    disk = DiskStates(tmp_path, 3500, max_entry_bytes=2000)
    for first in (1, 2, 3):
        disk.put(saved([first, 0]))
        time.sleep(0.02)  # distinct mtimes
    assert disk.info()[0] == 3
    disk.best(IDENT, [1, 0]).load()  # used again: now the most recent
    time.sleep(0.02)
    disk.put(saved([4, 0]))
    left = {tuple(disk.best(IDENT, [n, 0]).load().items)[0] for n in (1, 2, 3, 4) if disk.best(IDENT, [n, 0])}
    assert left == {1, 3, 4} and disk.info()[1] <= 3500
    assert not disk.put(saved([5, 0], size=3000))  # bigger than one entry may be: not written
    assert disk.best(IDENT, [5, 0]) is None


def test_a_damaged_file_is_a_miss_with_one_notice_and_is_removed(tmp_path):
    with logged("mmchat.engine") as said:
        disk = DiskStates(tmp_path, 1 << 20)
        disk.put(saved([1, 2, 3], size=5000))
        (path,) = tmp_path.glob("*.kvs")
        data = path.read_bytes()

        path.write_bytes(data[:-100])  # cut short
        assert disk.best(IDENT, [1, 2, 3]).load() is None
        assert len(said) == 1 and "cut short or damaged" in said[0] and not path.exists()

        path.write_bytes(data[:40] + os.urandom(len(data) - 40))  # noise after the magic
        assert disk.best(IDENT, [1, 2, 3]) is None and len(said) == 2 and not path.exists()

        flipped = bytearray(data)
        flipped[-1] ^= 1  # one bit of the KV data
        path.write_bytes(bytes(flipped))
        assert disk.best(IDENT, [1, 2, 3]).load() is None and len(said) == 3

        disk.put(saved([1, 2, 3], identity=OTHER))
        (other,) = tmp_path.glob(f"{OTHER}-*.kvs")
        other.rename(tmp_path / other.name.replace(OTHER, IDENT))  # another model's file under this one's name
        assert disk.best(IDENT, [1, 2, 3]) is None and len(said) == 4


@pytest.mark.model  # starts a process
def test_sigkill_while_writing_leaves_no_file_that_loads(tmp_path):
    """The writer is killed after it wrote the bytes but before the rename: only a temp file is left,
    which no lookup reads, and a later save clears it once it is stale."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from mmchat.engine import kvstate\n"
            "os.replace = lambda a, b: (print('written', flush=True), time.sleep(60))\n"
            f"kvstate.DiskStates({str(tmp_path)!r}, 1 << 30).put(kvstate.Saved({IDENT!r}, (1, 2, 3), b'x' * (8 << 20)))\n",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert child.stdout.readline() == b"written\n"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    (temp,) = tmp_path.iterdir()
    assert temp.name.endswith(".tmp") and temp.stat().st_size > 8 << 20  # all written, never renamed
    disk = DiskStates(tmp_path, 1 << 30)
    assert disk.best(IDENT, [1, 2, 3]) is None and disk.info() == (0, 0)
    old = time.time() - 7200
    os.utime(temp, (old, old))
    disk.put(saved([1, 2, 3]))
    assert not temp.exists() and disk.best(IDENT, [1, 2, 3]).load() is not None


def test_the_memory_tier_keeps_several_conversations_under_its_cap():
    memory = MemoryStates(2500)
    store = StateStore(memory=memory, min_tokens=2)
    a, b = saved([1, 1, 1]), saved([2, 2, 2])
    assert store.put(a) and store.put(b) and len(memory) == 2
    assert store.best(IDENT, [1, 1, 1, 5]).load() is a  # alternating conversations each get their own back
    assert store.best(IDENT, [2, 2, 2, 5]).load() is b
    store.put(saved([3, 3, 3]))  # over the cap: the least recently used (a) goes
    assert store.best(IDENT, [1, 1, 1]) is None and store.best(IDENT, [2, 2]).matched == 2
    assert not store.put(saved([4]))  # shorter than min_tokens
    store.put(saved([2, 2, 2, 6]))  # covers b: b goes
    assert len(memory) == 2 and store.best(IDENT, [2, 2, 2, 6]).matched == 4


def test_a_store_takes_the_longer_of_its_tiers(tmp_path):
    store = StateStore(memory=MemoryStates(1 << 20), disk=DiskStates(tmp_path, 1 << 20))
    store.put(saved([1, 2]), disk=False)
    store.disk.put(saved([1, 2, 3, 4]))
    assert store.best(IDENT, [1, 2, 3, 4, 5]).matched == 4
    assert len(list(tmp_path.glob("*.kvs"))) == 1  # disk=False kept the first in memory only


def test_ask_saves_the_state_only_when_a_later_turn_may_continue_it():
    result, engine = invoke("ask", "Hello")
    assert result.exit_code == 0 and engine.saved_states == [True]
    result, engine = invoke("ask", "Hello", "--no-log")
    assert result.exit_code == 0 and engine.saved_states == []
    result, engine = invoke("ask", "Hello", "--no-cache")
    assert result.exit_code == 0 and engine.saved_states == []


def test_the_cache_command_shows_and_clears_the_saved_states(tmp_path):
    from mmchat import config

    DiskStates(config.kv_state_dir(), 1 << 20).put(saved([1, 2, 3], size=4096))
    shown, _ = invoke("cache")
    assert shown.exit_code == 0
    assert f"kv states: {config.kv_state_dir()}" in shown.stdout and "kv entries: 1" in shown.stdout
    assert "kv size: 4.1 KiB" in shown.stdout
    cleared, _ = invoke("cache", "clear")
    assert cleared.exit_code == 0 and "removed 1 saved KV state from" in cleared.stderr
    assert "kv entries: 0" in invoke("cache")[0].stdout


def test_chat_saves_the_state_after_each_answer(tmp_path):
    from mmchat.runner import Runner
    from mmchat.testing import FakeEngine
    from tests.support.helpers import chat

    fake = FakeEngine()
    code, _ = chat(tmp_path, "Hello", "And again?", "/exit", runner=Runner(engine=fake))
    assert code == 0 and fake.saved_states == [True, True]
