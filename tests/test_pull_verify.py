"""Pulled files are checked against the Hub's sha256: as they arrive (resumed or not), and again on
`mmchat pull --verify NAME`. A damaged file is removed, said in one line, exit 1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmchat.errors import CorruptDownload
from mmchat.models import checksums, pulls, registry
from mmchat.models.download import PARTIAL_SUFFIX
from mmchat.models.pulls import verify_pulled
from tests.support.fakehub import FakeHub, use_hub
from tests.support.helpers import run_mmchat

MODEL = b"GGUF" + bytes(range(256)) * 40
PROJ = b"GGUF proj f16" * 100
REPO = "test-org/tiny-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with FakeHub({REPO: {"tiny-Q4_K_M.gguf": MODEL, "mmproj-tiny-f16.gguf": PROJ}}) as fake:
        fake.cache = use_hub(monkeypatch, fake.url, tmp_path / "hf")
        registry.user_file().parent.mkdir(parents=True, exist_ok=True)
        registry.user_file().write_text(f'[models.tiny]\nrepo = "{REPO}"\nquant = "Q4_K_M"\nmodalities = ["image"]\n')
        yield fake


def _cached(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.model
def test_a_good_pull_is_verified_and_verify_says_ok_per_file(hub: FakeHub):
    got = pulls.download_model("tiny", progress=False)
    assert got.model.read_bytes() == MODEL
    out = run_mmchat("pull", "--verify", "tiny")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["OK   tiny-Q4_K_M.gguf", "OK   mmproj-tiny-f16.gguf"]


@pytest.mark.model
def test_bytes_damaged_on_the_way_are_refused_and_nothing_is_left(hub: FakeHub):
    hub.corrupt.add("tiny-Q4_K_M.gguf")
    out = run_mmchat("pull", "tiny", "-q")
    err = out.stderr.decode()
    assert out.returncode == 1 and out.stdout == b""
    assert err.startswith("mmchat: error: tiny-Q4_K_M.gguf from test-org/tiny-GGUF arrived damaged (its sha256 is ")
    assert err.count("\n") == 1 and "run the pull again" in err
    assert not [p for p in _cached(hub.cache) if "tiny-Q4_K_M" in p.name or p.name.endswith(PARTIAL_SUFFIX)]
    with pytest.raises(registry.NotDownloaded):
        registry.find_local("tiny")
    hub.corrupt.clear()
    assert pulls.download_model("tiny", progress=False).model.read_bytes() == MODEL


def test_a_resumed_download_is_verified_whole(hub: FakeHub, monkeypatch: pytest.MonkeyPatch):
    """Bytes kept from an earlier, damaged attempt are not trusted for being the right length."""
    from huggingface_hub import constants

    blobs = hub.cache / "models--test-org--tiny-GGUF" / "blobs"
    blobs.mkdir(parents=True)
    partial = blobs / (hashlib.sha256(MODEL).hexdigest() + PARTIAL_SUFFIX)
    kept = bytearray(MODEL[:1000])
    kept[500] ^= 0x01
    partial.write_bytes(kept)
    with pytest.raises(CorruptDownload, match="tiny-Q4_K_M.gguf from test-org/tiny-GGUF arrived damaged"):
        pulls.download_model("tiny", progress=False)
    assert hub.range_requests("tiny-Q4_K_M.gguf") == ["bytes=1000-"]  # it was resumed, then checked
    assert not partial.exists()

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)  # a cut mid-file keeps what came, then resumes
    hub.drop_once.add("tiny-Q4_K_M.gguf")
    got = pulls.download_model("tiny", progress=False)
    assert got.model.read_bytes() == MODEL and len(hub.range_requests("tiny-Q4_K_M.gguf")) == 2


@pytest.mark.model
def test_verify_finds_a_flipped_byte_in_a_pulled_file_and_removes_it(hub: FakeHub):
    got = pulls.download_model("tiny", progress=False)
    blob = got.mmproj.resolve()
    data = bytearray(blob.read_bytes())
    data[7] ^= 0x10
    blob.write_bytes(data)
    out = run_mmchat("pull", "--verify", "tiny")
    lines, err = out.stdout.decode().splitlines(), out.stderr.decode()
    assert out.returncode == 1
    assert lines[0] == "OK   tiny-Q4_K_M.gguf"
    assert lines[1].startswith("BAD  mmproj-tiny-f16.gguf: its sha256 is ") and lines[1].endswith("; removed")
    assert (
        err == "mmchat: error: 1 of 2 files of tiny do not match the Hub and were removed: "
        "run `mmchat pull tiny` to download them again\n"
    )
    assert not blob.exists() and not got.mmproj.is_symlink()
    assert pulls.download_model("tiny", progress=False).mmproj.read_bytes() == PROJ
    assert run_mmchat("pull", "--verify", "tiny").returncode == 0


def test_verify_shows_a_bar_while_hashing_a_big_file(hub: FakeHub, monkeypatch, capfd):
    pulls.download_model("tiny", progress=False)
    monkeypatch.setattr(checksums, "BAR_FROM", 1000)  # 64 MiB by default
    monkeypatch.setenv("TQDM_POSITION", "-1")  # tqdm draws on a non-TTY stderr only when asked
    lines: list[str] = []
    verify_pulled("tiny", report=lines.append)
    err = capfd.readouterr().err
    assert "checking tiny-Q4_K_M.gguf" in err and "100%" in err and "mmproj-tiny-f16.gguf" in err
    assert lines == ["OK   tiny-Q4_K_M.gguf", "OK   mmproj-tiny-f16.gguf"]


@pytest.mark.model
def test_verify_of_a_model_not_downloaded_says_how_to_pull_it(hub: FakeHub):
    out = run_mmchat("pull", "--verify", "tiny")
    assert out.returncode == 2 and "run `mmchat pull tiny`" in out.stderr.decode()
