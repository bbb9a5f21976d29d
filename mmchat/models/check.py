"""`mmchat models --check`: each registry entry against the Hub's listing of its repository.

For maintainers, online, before a release: models.toml names a quant and a size per model, and
the Hub's repositories change under it (ggml-org renamed and re-quantized its Gemma 4 files after
release). An entry passes when its own quant names a chat model file (no fallback), a projector
is there for its modalities, and the files the rules in hubfiles.py take add up to its size_gb.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import hubfiles
from .registry import ModelEntry

# size_gb is rounded to 0.1 GB: it may differ from the files' total by this much plus this share of it.
SIZE_SLACK_GB = 0.05
SIZE_SLACK_SHARE = 0.05

Listing = Mapping[str, int | None]  # file name -> size in bytes


@dataclass
class EntryCheck:
    name: str
    repo: str
    model: str | None = None
    mmproj: str | None = None
    total_bytes: int | None = None
    size_gb: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        files = " + ".join(f for f in (self.model, self.mmproj) if f) or "-"
        size = f"{self.total_bytes / 1e9:.2f} GB" if self.total_bytes is not None else "size unknown"
        said = f"size_gb {self.size_gb:g}" if self.size_gb else "no size_gb"
        head = f"{'OK' if self.ok else 'MISS':<5} {self.name} ({self.repo}): {files}, {size} ({said})"
        return head if self.ok else f"{head}: {'; '.join(self.problems)}"

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "repo": self.repo,
            "ok": self.ok,
            "model": self.model,
            "mmproj": self.mmproj,
            "bytes": self.total_bytes,
            "size_gb": self.size_gb,
            "problems": self.problems,
        }


def check_entry(entry: ModelEntry, files: Listing) -> EntryCheck:
    """What the Hub's listing `files` says about one entry."""
    result = EntryCheck(entry.name, entry.repo, size_gb=entry.size_gb)
    pick = hubfiles.pick_model(files, hubfiles.wanted(entry.quant, named=True))
    if pick.path is None:
        fallback = hubfiles.pick_model(files, hubfiles.wanted(entry.quant, named=False))
        quants = hubfiles.available_quants(files, near=entry.quant)
        taken = f"; a pull would take {fallback.quant}" if fallback.path else ""
        result.problems.append(f"no {entry.quant} model file (it has {', '.join(quants) or 'none'}{taken})")
        return result
    result.model = pick.path
    result.mmproj = hubfiles.pick_projector(files, pick.path, entry.repo)
    if result.mmproj is None and entry.modalities:
        result.problems.append(f"no mmproj projector for {' and '.join(entry.modalities)}")
    taken = hubfiles.shards(pick.path, files) + ([result.mmproj] if result.mmproj else [])
    result.total_bytes = hubfiles.total_size(taken, files)
    if result.total_bytes is not None and entry.size_gb:
        actual = result.total_bytes / 1e9
        if abs(actual - entry.size_gb) > SIZE_SLACK_GB + SIZE_SLACK_SHARE * actual:
            result.problems.append(f"the files are {actual:.2f} GB, size_gb says {entry.size_gb:g}")
    return result


def check_entries(entries: Iterable[ModelEntry], list_repo: Callable[[str, str], Listing]) -> list[EntryCheck]:
    """Every entry that is downloaded from the Hub (not those on a server), each against its listing.
    `list_repo(repo, name)` lists a repository; a ModelNotFound from it (no such repository, gated)
    is that entry's miss, anything else (no network) stops the check."""
    from ..errors import ModelNotFound

    results = []
    for entry in entries:
        if entry.base_url:
            continue
        try:
            files = list_repo(entry.repo, entry.name)
        except ModelNotFound as e:
            results.append(EntryCheck(entry.name, entry.repo, size_gb=entry.size_gb, problems=[str(e)]))
            continue
        results.append(check_entry(entry, files))
    return results


def hub_listing(repo: str, name: str) -> Listing:
    """The Hub's listing of `repo` (file -> size), a failure as the MmchatError it means."""
    from .download import hub_files, hub_session

    with hub_session(repo, name, progress=False):
        return hub_files(repo)[0]
