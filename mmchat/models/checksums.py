"""Pulled files checked against what the Hub says they are, byte for byte.

A resumed download joins bytes from two processes, a proxy can hand over an error page of the
right length, and a disk can flip a bit: the size alone proves none of it. The Hub lists each
file's sha256 (the LFS oid) or, for small files kept in git, its git blob id; a pull hashes what
arrived before it becomes the cached file, and `mmchat pull --verify NAME` hashes what is there.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptDownload

_CHUNK = 4 << 20
BAR_FROM = 64 << 20  # files this big show a progress bar while they are hashed


@dataclass(frozen=True)
class Expected:
    algorithm: str  # "sha256" (an LFS file) or "git-sha1" (a file kept in git itself)
    digest: str


def expected_hashes(info: Any) -> dict[str, Expected]:
    """{file name: its hash} from a `model_info(..., files_metadata=True)` listing."""
    found = {}
    for sibling in getattr(info, "siblings", None) or []:
        lfs = getattr(sibling, "lfs", None)
        if lfs is not None and getattr(lfs, "sha256", None):
            found[sibling.rfilename] = Expected("sha256", lfs.sha256.lower())
        elif getattr(sibling, "blob_id", None):
            found[sibling.rfilename] = Expected("git-sha1", sibling.blob_id.lower())
    return found


def digest(path: Path, algorithm: str, label: str) -> str:
    """The file's hash, read in chunks, with a bar on stderr for a big file."""
    from huggingface_hub.utils import tqdm  # honours disable_progress_bars (`-q`) and HF_HUB_DISABLE_PROGRESS_BARS

    size = path.stat().st_size
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(b"blob %d\0" % size)
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with (
        open(path, "rb") as f,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"checking {label}", disable=size < BAR_FROM) as bar,
    ):
        while n := f.readinto(buffer):
            h.update(view[:n])
            bar.update(n)
    return h.hexdigest()


def mismatch(path: Path, expected: Expected | None, label: str) -> str | None:
    """None when `path` is what the Hub lists (or the Hub lists nothing), else a short description."""
    if expected is None:
        return None
    actual = digest(path, expected.algorithm, label)
    if actual == expected.digest:
        return None
    name = "sha256" if expected.algorithm == "sha256" else "git blob id"
    return f"its {name} is {actual[:16]}…, the Hub's is {expected.digest[:16]}…"


def check_download(path: Path, expected: Expected | None, repo: str, filename: str) -> None:
    """Raise CorruptDownload, with the bad bytes removed, when a finished download is not the Hub's file."""
    problem = mismatch(path, expected, filename)
    if problem:
        _remove_cached(path)
        raise CorruptDownload(
            f"{filename} from {repo} arrived damaged ({problem}): the bad bytes are removed; run the pull again"
        )


def _in_snapshot(path: Path) -> tuple[str, str]:
    """(commit, name in the repo) of a file in the Hugging Face cache's snapshots/ folder."""
    parts = path.parts
    i = len(parts) - 1 - parts[::-1].index("snapshots")
    return parts[i + 1], "/".join(parts[i + 2 :])


def _remove_cached(path: Path) -> None:
    """The file, and the blob it points to when it is a snapshot's pointer: the next pull downloads it again."""
    blob = path.resolve()
    for p in (path, blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def verify_files(
    repo: str,
    files: Iterable[Path],
    hashes_at: Callable[[str, str], dict[str, Expected]],
    report: Callable[[str], None],
) -> int:
    """Hash each cached file against `hashes_at(repo, commit)`, the Hub's hashes at the revision it came
    from; a bad file is removed. Reports a line per file; returns how many were bad."""
    bad = 0
    listings: dict[str, dict[str, Expected]] = {}
    for path in files:
        commit, name = _in_snapshot(path)
        if commit not in listings:
            listings[commit] = hashes_at(repo, commit)
        expected = listings[commit].get(name)
        if expected is None:
            report(f"?    {name}: the Hub lists no hash for it at {commit[:12]}; not checked")
            continue
        problem = mismatch(path, expected, name)
        if problem is None:
            report(f"OK   {name}")
            continue
        _remove_cached(path)
        report(f"BAD  {name}: {problem}; removed")
        bad += 1
    return bad
