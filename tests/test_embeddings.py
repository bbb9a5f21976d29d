"""Encoded media on disk: a new process or Runner encodes nothing it has seen, and faults never hurt."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmchat import Runner, image_part, text_part
from mmchat.config import cache_dir
from mmchat.engine.embeddings import DiskMediaCache, cache_info
from tests.support.helpers import (
    GREEDY,
    MMCHAT,
    THREADS,
    logged,
    mmchat_env,
    model_args,
    run_mmchat,
)
from tests.support.mediafiles import noise_png


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "photo.png", seed=21)


def ask(models, png, question="What is it?", **load):
    """One question in a Runner of its own (a new engine, as a new process has): answer and engine stats."""
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS, **load) as r:
        reply = r.chat([{"role": "user", "content": [image_part(str(png)), text_part(question)]}], **GREEDY)
        return reply, r.engine.stats


def value_files() -> list[Path]:
    return sorted(cache_dir().rglob("*.val"))


def test_a_new_engine_gets_the_image_from_disk_and_answers_the_same(models, png):
    first, cold = ask(models, png)
    assert cold.media_encodes == 1 and first.usage.encoded_media == 1 and len(value_files()) == 1
    again, warm = ask(models, png)
    assert warm.media_encodes == 0 and warm.media_disk_hits == 1 and again.usage.encoded_media == 0
    assert again.content == first.content
    other, warm = ask(models, png, "And the colours?")  # another question about the same image
    assert warm.media_encodes == 0 and other.content != first.content


def test_different_preprocessing_misses_the_cache(models, png):
    ask(models, png)
    _, smaller = ask(models, png, image_max_side=48)  # other pixels reach the projector
    assert smaller.media_encodes == 1
    _, capped = ask(models, png, image_max_tokens=8)  # the projector is set up otherwise
    assert capped.media_encodes == 1


def test_no_cache_neither_reads_nor_writes(models, png):
    _, stats = ask(models, png, cache=False)
    assert stats.media_encodes == 1 and value_files() == []
    ask(models, png)
    _, stats = ask(models, png, cache=False)
    assert stats.media_encodes == 1 and stats.media_disk_hits == 0


def test_a_truncated_entry_is_encoded_again_and_replaced(models, png):
    first, _ = ask(models, png)
    (entry,) = value_files()
    entry.write_bytes(entry.read_bytes()[:100])
    again, stats = ask(models, png)
    assert again.content == first.content and stats.media_encodes == 1
    _, stats = ask(models, png)
    assert stats.media_encodes == 0 and stats.media_disk_hits == 1  # the entry was written whole again


def test_a_cache_that_cannot_be_written_is_off_with_one_notice(models, png, isolated_user_dir):
    (isolated_user_dir / "cache").write_text("a file where the cache directory would go")
    with (
        logged("mmchat.engine", logging.INFO) as notes,
        Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r,
    ):
        reply = r.chat([{"role": "user", "content": [image_part(str(png)), text_part("What is it?")]}], **GREEDY)
    assert reply.content and len(notes) == 1 and "media cache" in notes[0] and "is off for this run" in notes[0]


def test_two_processes_writing_the_same_entry_at_once_both_answer(models, png):
    args = [
        "ask",
        "What is it?",
        "-i",
        str(png),
        *model_args(models),
        "--json",
    ]
    procs = [
        subprocess.Popen([*MMCHAT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mmchat_env())
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    answers = [json.loads(out) for out, _ in outs]
    assert answers[0]["choices"] == answers[1]["choices"]
    third = json.loads(run_mmchat(*args).stdout)
    assert third["choices"] == answers[0]["choices"]
    assert third["usage"]["prompt_tokens_details"]["encoded_media"] == 0  # the JSON says: nothing encoded
    assert cache_info(cache_dir())[0] == 1


def test_eviction_keeps_the_size_cap(tmp_path):
    entry = np.ones(64 * 100, dtype=np.float32)  # 25.6 kB a value
    cache = DiskMediaCache(tmp_path / "c", "proj", max_bytes=100_000)
    for i in range(10):
        cache.put(f"media{i}#0", entry, 100, 64)
        assert cache_info(tmp_path / "c")[1] <= 100_000
    assert cache.get("media9#0", 100, 64) is not None and cache.get("media0#0", 100, 64) is None  # oldest went
    cache.close()


def test_a_damaged_value_is_a_miss_never_an_error(tmp_path):
    cache = DiskMediaCache(tmp_path / "c", "proj", max_bytes=1 << 20)
    cache.put("m#0", np.arange(64, dtype=np.float32), 1, 64)
    (value,) = (tmp_path / "c").rglob("*.val")
    data = bytearray(value.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the embeddings
    value.write_bytes(bytes(data))
    assert cache.get("m#0", 1, 64) is None and not cache.contains("m#0")  # dropped
    cache.put("m#0", np.arange(64, dtype=np.float32), 1, 64)
    assert np.array_equal(cache.get("m#0", 1, 64), np.arange(64, dtype=np.float32))
    assert cache.get("m#0", 2, 64) is None  # a shape that does not match is no hit either
    cache.close()


def test_the_cache_command_shows_and_clears(models, png):
    ask(models, png)
    shown = run_mmchat("cache")
    assert shown.returncode == 0
    assert f"location: {cache_dir()}" in shown.stdout.decode() and "entries: 1" in shown.stdout.decode()
    cleared = run_mmchat("cache", "clear")
    assert cleared.returncode == 0 and b"removed 1 entry" in cleared.stderr
    assert "entries: 0" in run_mmchat("cache").stdout.decode()
    _, stats = ask(models, png)
    assert stats.media_encodes == 1


def test_an_encode_in_another_thread_and_a_turn_never_meet_inside_llama_cpp(models, tmp_path, monkeypatch):
    """The REPL encodes attachments in a worker while a turn may run: one thread at a time goes
    into llama.cpp, and what the worker encoded lands in both caches."""
    import threading
    import time

    from llama_cpp import mtmd_cpp

    import mmchat.engine._lib as lib

    inside, most, guard = [0], [0], threading.Lock()

    def counted(fn):
        def call(*args, **kwargs):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                time.sleep(0.002)  # widen the window two threads would need to meet
                return fn(*args, **kwargs)
            finally:
                with guard:
                    inside[0] -= 1

        return call

    for name in ("mtmd_encode_chunk", "mtmd_helper_decode_image_chunk", "mtmd_tokenize"):
        monkeypatch.setattr(mtmd_cpp, name, counted(getattr(mtmd_cpp, name)))
    monkeypatch.setattr(lib, "decode_tokens", counted(lib.decode_tokens))
    pngs = [noise_png(tmp_path / f"{i}.png", seed=30 + i) for i in range(13)]
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        media = [r.media_of(r.attachment(str(p))) for p in pngs[1:]]
        worker = threading.Thread(target=lambda: [r.engine.prepare(m) for m in media])  # one attachment at a time
        worker.start()
        for question in ("What is it?", "And now?", "Once more?", "Again?"):
            r.chat([{"role": "user", "content": [image_part(str(pngs[0])), text_part(question)]}], **GREEDY)
        worker.join()
        assert most[0] == 1
        later = r.chat([{"role": "user", "content": [image_part(str(pngs[1])), text_part("This one?")]}], **GREEDY)
        assert later.usage.encoded_media == 0 and r.engine.stats.media_encodes == 13
    _, stats = ask(models, pngs[2])
    assert stats.media_encodes == 0 and stats.media_disk_hits == 1


def test_the_cache_lives_under_mmchat_home_or_the_platform_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCHAT_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / "cache" / "media"
    monkeypatch.delenv("MMCHAT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mmchat" / "media"
