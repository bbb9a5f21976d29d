"""Models pulled from the Hub: a name (or hf:owner/repo[:QUANT]) downloaded with its projector,
every file checked against the Hub's sha256 (download.py, checksums.py), found in the cache or
pulled (`find_files`), and checked again later (`mmchat pull --verify`). Which files is hubfiles';
what a name means is the registry's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import CorruptDownload, ModelNotFound
from . import hubfiles
from .checksums import verify_files
from .registry import (
    ModelFiles,
    NotDownloaded,
    Quant,
    Registry,
    fallback_notice,
    files_of,
    find_local,
    is_path,
    load_registry,
    lookup,
    quant_not_found,
)

log = logging.getLogger("mmchat.models")


def download_model(
    name_or_hf: str,
    *,
    quant: Quant = None,
    progress: bool = True,
    known: Registry | None = None,
) -> ModelFiles:
    """Download a registry model or hf:owner/repo[:QUANT] (model + projector) into the Hugging Face cache.
    A quant the caller names must exist; the registry's own falls back along hubfiles.QUANT_ORDER,
    with one warning. `known`: the registry already loaded (so a broken user file warns once)."""
    from .download import fetch, hub_files, hub_session

    if is_path(name_or_hf):
        raise ModelNotFound(
            f"cannot pull a file path: {name_or_hf}: give a model name (`mmchat models`) or hf:owner/repo"
        )
    entry, target, _, want = lookup(name_or_hf, quant, known or load_registry())
    if entry.base_url:
        raise ModelNotFound(
            f"{entry.name} runs on the server at {entry.base_url} (models.toml): there is nothing to pull"
        )
    with hub_session(entry.repo, target, progress=progress):
        files, hashes = hub_files(entry.repo)  # every file is checked against its hash as it arrives
        pick = hubfiles.pick_model(files, want)
        if pick.path is None:
            raise quant_not_found(entry.repo, entry.name, want, files)
        if pick.fell_back:
            log.warning(fallback_notice(entry.repo, want, pick.quant or "?"))
        model, mmproj = pick.path, hubfiles.pick_projector(files, pick.path, entry.repo)
        entry = replace(entry, quant=pick.quant or entry.quant)
        if mmproj is None and entry.modalities:
            raise ModelNotFound(
                f"{entry.repo} has no mmproj*.gguf projector, which {entry.name} needs for "
                f"{' and '.join(entry.modalities)}: check the repo in your models.toml"
            )
        paths = [fetch(entry.repo, f, hashes.get(f)) for f in hubfiles.shards(model, files)]
        mmproj_path = fetch(entry.repo, mmproj, hashes.get(mmproj)) if mmproj else None
    return ModelFiles(Path(paths[0]), Path(mmproj_path) if mmproj_path else None, entry.name, entry)


def find_files(
    model: str | Path | None = None,
    *,
    pull: bool = False,
    quant: Quant = None,
    progress: bool = True,
    known: Registry | None = None,
) -> ModelFiles:
    """find_local(), and with pull=True download a known model that is not there yet."""
    try:
        return find_local(model, quant=quant, known=known)
    except NotDownloaded as e:
        if not pull:
            raise
        return download_model(e.spec, quant=e.quant, progress=progress, known=known)


def verify_pulled(
    name: str, *, quant: str | None = None, progress: bool = True, report: Callable[[str], None] = print
) -> None:
    """`mmchat pull --verify NAME`: hash every downloaded file of NAME against the Hub's listing of the
    revision it came from, a line per file; damaged files are removed and CorruptDownload says so."""
    from .download import hub_files, hub_session

    if is_path(name):
        raise ModelNotFound(f"--verify checks a pulled model: give its name (`mmchat models`), not a path: {name}")
    found = find_local(name, quant=quant)
    files = files_of(found)
    with hub_session(found.entry.repo, name, progress=progress):
        bad = verify_files(found.entry.repo, files, lambda repo, commit: hub_files(repo, commit)[1], report)
    if bad:
        raise CorruptDownload(
            f"{bad} of {len(files)} files of {name} do not match the Hub and were removed: "
            f"run `mmchat pull {name}` to download them again"
        )
