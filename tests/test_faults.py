"""Disk state survives SIGKILL at any moment, truncation, two processes at once and a full disk.

Writers (tests/support/faultwriters.py) are killed for real mid-write; the next run must read only
whole values and go on working. A full disk (ENOSPC) is simulated where mmchat writes: one line
naming the file, and nothing half-written left where the next run reads.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmchat.chat import files
from mmchat.chat.conversation import Conversation
from mmchat.chat.history import SafeFileHistory, parse
from mmchat.engine.embeddings import DiskMediaCache, cache_info
from mmchat.errors import DiskFull, InputError
from tests.support.faultwriters import N_EMBD, conversation_text, embedding, history_entry
from tests.support.helpers import chat, logged

ROOT = Path(__file__).resolve().parent.parent
MOMENTS = (0.0, 0.01, 0.03, 0.08, 0.2)  # seconds after the first write


def start(kind: str, path: Path, tag: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faultwriters", kind, str(path), tag],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline() == b"go\n", proc.stderr.read().decode()
    return proc


def kill(proc: subprocess.Popen) -> bytes:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()  # it was still writing
    return proc.stderr.read()


def killed_at(kind: str, path: Path, tag: str, moment: float) -> bytes:
    proc = start(kind, path, tag)
    time.sleep(moment)
    return kill(proc)


def whole_history(path: Path, tags: str) -> list[str]:
    """Every entry read back is one that was written whole, each writer's in order."""
    entries = parse(path.read_bytes())
    last = {t: -1 for t in tags}
    for entry in entries:
        tag, i = entry[0], int(entry[1:].split(":", 1)[0])
        assert entry == history_entry(tag, i), f"a cut or mixed entry: {entry[:40]!r}…"
        assert i > last[tag]
        last[tag] = i
    return entries


# -- SIGKILL at varied moments ------------------------------------------------------------------


@pytest.mark.model
def test_history_killed_mid_write_reads_back_only_whole_entries(tmp_path):
    path = tmp_path / "history"
    for n, moment in enumerate(MOMENTS):
        killed_at("history", path, "abcde"[n], moment)
    entries = whole_history(path, "abcde")
    assert len(entries) >= len(MOMENTS)
    notes: list[str] = []
    history = SafeFileHistory(path, notes.append)  # the next REPL: loads, appends, no notice
    history.append_string("after the kills")
    assert list(history.load_history_strings())[0] == "after the kills" and notes == []


@pytest.mark.model
def test_a_saved_conversation_killed_mid_save_is_the_old_or_the_new_one(tmp_path):
    path = tmp_path / "chat.json"
    for moment in MOMENTS:
        killed_at("conversation", path, "s", moment)
        text = files.load(path).messages[0]["content"]
        i = int(text[1:].split(":", 1)[0])
        assert text == conversation_text("s", i)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "chat.json"]
    assert all(name.startswith(".chat.json.") and name.endswith(".tmp") for name in leftovers)  # never read


@pytest.mark.model
def test_the_media_cache_killed_mid_write_keeps_whole_entries_or_none(tmp_path):
    directory = tmp_path / "cache"
    counts = []
    for moment in MOMENTS:
        assert b"BAD" not in killed_at("media-cache", directory, "m", moment)
        with logged("mmchat.engine") as notes:
            cache = DiskMediaCache(directory, "faults", max_bytes=1 << 30)
            found = 0
            for i in range(4000):
                want = embedding("m", i)
                got = cache.get(f"m{i}", len(want), N_EMBD)
                if got is not None:
                    assert np.array_equal(got.reshape(want.shape), want)
                    found += 1
            cache.put("after", embedding("x", 1), len(embedding("x", 1)), N_EMBD)
        assert cache.get("after", len(embedding("x", 1)), N_EMBD) is not None and notes == []
        cache.close()
        counts.append(found)
    assert counts[-1] > 0 and cache_info(directory)[0] >= counts[-1]


# -- two processes at once ----------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("kind", ["history", "media-cache", "conversation"])
def test_two_processes_write_at_once(tmp_path, kind):
    path = tmp_path / {"history": "history", "media-cache": "cache", "conversation": "chat.json"}[kind]
    first, second = start(kind, path, "p"), start(kind, path, "q")
    time.sleep(0.5)
    errs = kill(first) + kill(second)
    assert b"BAD" not in errs and b"NOTICE" not in errs, errs.decode()  # neither saw a broken entry or locked out
    if kind == "history":
        entries = whole_history(path, "pq")
        assert {e[0] for e in entries} == {"p", "q"}
    elif kind == "conversation":
        text = files.load(path).messages[0]["content"]
        assert text == conversation_text(text[0], int(text[1:].split(":", 1)[0]))
    else:
        assert cache_info(path)[0] > 2


# -- truncation ---------------------------------------------------------------------------------


def test_a_truncated_history_loses_only_the_cut_entry(tmp_path):
    path = tmp_path / "history"
    written = [history_entry("t", i) for i in range(12)]
    history = SafeFileHistory(path, pytest.fail)
    for entry in written:
        history.store_string(entry)
    data = path.read_bytes()
    for cut in range(0, len(data), 331):
        path.write_bytes(data[:cut])
        got = list(reversed(list(SafeFileHistory(path, pytest.fail).load_history_strings())))
        assert got == written[: len(got)] and len(got) >= data[:cut].count(b" len=") - 1


def test_a_truncated_saved_conversation_is_one_clear_line(tmp_path):
    path = tmp_path / "chat.json"
    files.save(Conversation(None, [{"role": "user", "content": "hello there"}]), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"chat.json is not a JSON conversation .*load a file written by /save"):
        files.load(path)


def test_a_truncated_media_cache_index_starts_afresh_with_one_notice(tmp_path):
    directory = tmp_path / "cache"
    cache = DiskMediaCache(directory, "faults", max_bytes=1 << 30)
    for i in range(40):
        cache.put(f"k{i}", embedding("k", i), len(embedding("k", i)), N_EMBD)
    cache.close()
    db = directory / "cache.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with logged("mmchat.engine") as notes:
        for run in range(2):  # damaged once, then a working cache again: not "off" for every later run
            cache = DiskMediaCache(directory, "faults", max_bytes=1 << 30)
            value = embedding("n", run)
            cache.put(f"n{run}", value, len(value), N_EMBD)
            assert cache.get(f"n{run}", len(value), N_EMBD) is not None
            cache.close()
    assert len(notes) == 1 and "was damaged" in notes[0] and "starts afresh" in notes[0]


# -- a full disk --------------------------------------------------------------------------------


class FullDisk:
    """A file object that takes `room` bytes, then fails the way a full disk does."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.__exit__(*exc)


def test_a_save_on_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    from mmchat import atomic

    path = tmp_path / "chat.json"
    files.save(Conversation(None, [{"role": "user", "content": "the old one"}]), path)
    old = path.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: FullDisk(real(*a, **k), 10))
    with pytest.raises(DiskFull) as e:
        files.save(Conversation(None, [{"role": "user", "content": "x" * 100_000}]), path)
    assert str(e.value) == (
        f"no space left on the device to write {path}: free some space and try again (the old file is unchanged)"
    )
    assert e.value.exit_code == 1 and path.read_bytes() == old and os.listdir(tmp_path) == ["chat.json"]


def test_the_repl_keeps_going_when_the_history_disk_is_full(tmp_path, monkeypatch):
    path = tmp_path / "h" / "history"
    path.parent.mkdir()
    SafeFileHistory(path, pytest.fail).store_string("typed yesterday")
    old = path.read_bytes()
    real = os.write

    def short_write(fd, data):  # the history file takes half an entry; every other file is left alone
        if os.readlink(f"/proc/self/fd/{fd}") == str(path):
            data = data[: len(data) // 2]
        return real(fd, data)

    monkeypatch.setattr(os, "write", short_write)
    code, out = chat(tmp_path, "first question", "second question", "/exit")
    assert code == 0 and out.count("no space left on the device to write") == 1 and str(path) in out
    assert out.count("first question") >= 1 and "second question" in out
    assert path.read_bytes() == old  # the half entry was cut back off


def test_the_media_cache_on_a_full_disk_is_off_for_the_run_and_keeps_no_half_entry(tmp_path, monkeypatch):
    import diskcache.core

    directory = tmp_path / "cache"
    with logged("mmchat.engine") as notes:
        cache = DiskMediaCache(directory, "faults", max_bytes=1 << 30)
        cache.put("whole", embedding("w", 3), len(embedding("w", 3)), N_EMBD)
        monkeypatch.setattr(diskcache.core, "open", lambda *a, **k: FullDisk(open(*a, **k), 100), raising=False)
        value = embedding("w", 9)
        cache.put("cut", value, len(value), N_EMBD)
        monkeypatch.undo()
        assert len(notes) == 1 and "is off for this run (No space left on device)" in notes[0]
        cache = DiskMediaCache(directory, "faults", max_bytes=1 << 30)
        assert cache.get("cut", len(value), N_EMBD) is None
        whole = cache.get("whole", len(embedding("w", 3)), N_EMBD)
        assert np.array_equal(whole.reshape(-1, N_EMBD), embedding("w", 3))
    assert len(notes) == 1


def test_a_pull_onto_a_full_disk_is_one_line_exit_1_and_resumes_later(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmchat.cli import app
    from mmchat.env import Environment, use
    from mmchat.models import download, pulls, registry
    from mmchat.testing import FakeEngine
    from tests.support.fakehub import FakeHub, use_hub

    model = b"GGUF" + bytes(range(256)) * 400
    with FakeHub({"test-org/tiny-GGUF": {"tiny-Q4_K_M.gguf": model, "mmproj-tiny-f16.gguf": b"GGUF proj"}}) as hub:
        use_hub(monkeypatch, hub.url, tmp_path / "hf")
        registry.user_file().parent.mkdir(parents=True, exist_ok=True)
        registry.user_file().write_text(
            '[models.tiny]\nrepo = "test-org/tiny-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\n'
        )
        monkeypatch.setattr(download, "open", lambda *a, **k: FullDisk(open(*a, **k), 40_000), raising=False)
        env = Environment(engine=FakeEngine(), stdin_isatty=False, stdout_isatty=False, stderr_isatty=False, environ={})
        with use(env):
            result = CliRunner().invoke(app, ["pull", "tiny", "-q"])
        assert result.exit_code == 1 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("mmchat: error: no space left on the device to write ") and ".mmchat-partial" in line
        assert "tiny-Q4_K_M.gguf resumes where it stopped" in line
        with pytest.raises(registry.NotDownloaded):
            registry.find_local("tiny")  # nothing half-written where the next run reads
        monkeypatch.setattr(download, "open", open, raising=False)
        assert pulls.download_model("tiny", progress=False).model.read_bytes() == model
        assert hub.range_requests("tiny-Q4_K_M.gguf") == ["bytes=40000-"]


def test_a_history_written_by_prompt_toolkit_reads_the_same(tmp_path):
    from prompt_toolkit.history import FileHistory

    path = tmp_path / "history"
    for entry in ("hello", "two\nlines", "third"):
        FileHistory(str(path)).store_string(entry)
    SafeFileHistory(path, pytest.fail).store_string("mine")
    assert list(SafeFileHistory(path, pytest.fail).load_history_strings()) == ["mine", "third", "two\nlines", "hello"]
    assert list(FileHistory(str(path)).load_history_strings())[0] == "mine"  # and the other way round
