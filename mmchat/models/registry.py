"""The model registry (models.toml) and pulls from Hugging Face.

Which model runs, first match wins: the --model flag (or Runner(model=...)) > the MMCHAT_MODEL
environment variable (read at the edge, by models/target.py find_target) > `default` in the user's
models.toml > `default` in the bundled one.
Entries merge the same way: the user's file adds entries and overrides fields of bundled ones.

Only huggingface_hub touches the network or its cache (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT,
HF_HUB_OFFLINE are honoured as it honours them); find_local() never goes online.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ModelNotFound
from . import hubfiles
from .hubfiles import Want

ENV_MODEL = "MMCHAT_MODEL"
HF_PREFIX = "hf:"
MODALITIES = ("image", "audio", "video")

log = logging.getLogger("mmchat.models")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    repo: str
    quant: str
    modalities: tuple[str, ...] = ()
    context: int = 0  # 0: unknown (an hf: repo outside the registry)
    size_gb: float | None = None
    notes: str = ""
    base_url: str = ""  # served by an OpenAI-compatible server here, not downloaded
    server_model: str = ""  # the server's id for it (default: the first it lists)
    original: str = ""  # the Hugging Face id of the model these GGUFs were converted from


@dataclass(frozen=True)
class ModelFiles:
    model: Path
    mmproj: Path | None
    name: str | None = None
    entry: ModelEntry | None = None


@dataclass(frozen=True)
class Registry:
    entries: dict[str, ModelEntry]  # keyed by lower-cased name, in file order
    default: str

    def get(self, name: str) -> ModelEntry | None:
        return self.entries.get(name.lower())

    def by_original(self, model_id: str) -> ModelEntry | None:
        """The entry whose GGUFs were converted from `model_id` (e.g. Qwen/Qwen3-VL-4B-Instruct)."""
        return next((e for e in self.entries.values() if e.original.lower() == model_id.lower()), None)

    def by_repo(self, repo: str) -> ModelEntry | None:
        """The entry whose GGUFs live in `repo` (owner/name)."""
        return next((e for e in self.entries.values() if e.repo and e.repo.lower() == repo.lower()), None)


class QuantNotFound(ModelNotFound):
    """A repository without a model file of the asked quantization; `quants` are those it has,
    nearest in size to the asked one first."""

    def __init__(self, message: str, repo: str, quant: str, quants: list[str]):
        super().__init__(message)
        self.repo, self.quant, self.quants = repo, quant, quants


class NotDownloaded(ModelNotFound):
    """A known model that is not in the Hugging Face cache yet; pulls.find_files(pull=True) fetches it."""

    def __init__(self, entry: ModelEntry, target: str, spec: str, quant: str | Want | None = None):
        size = f" (about {entry.size_gb:g} GB)" if entry.size_gb else ""
        super().__init__(f"model '{target}' is not downloaded: run `mmchat pull {target}`{size} or add --pull")
        self.entry, self.spec, self.quant = entry, spec, quant  # pull(spec, quant=quant) fetches it


# -- the registry ------------------------------------------------------------------------------


_FIELDS = {
    "repo": str,
    "original": str,
    "quant": str,
    "modalities": list,
    "context": int,
    "size_gb": (int, float),
    "notes": str,
    "base_url": str,
    "server_model": str,
}


def _entry(name: str, table: Any, base: ModelEntry | None = None) -> ModelEntry:
    """One [models.NAME] table as an entry; a partial table overrides fields of `base`."""
    if not isinstance(table, dict):
        raise ValueError("must be a table of fields")
    for key, value in table.items():
        if key not in _FIELDS:
            raise ValueError(f"unknown field {key!r} (fields: {', '.join(_FIELDS)})")
        if not isinstance(value, _FIELDS[key]) or isinstance(value, bool):
            raise ValueError(f"{key} has the wrong type")
    if any(m not in MODALITIES for m in table.get("modalities", [])):
        raise ValueError(f"modalities must be drawn from {', '.join(MODALITIES)}")
    values = {**table, "modalities": tuple(table["modalities"])} if "modalities" in table else dict(table)
    if "size_gb" in values:
        values["size_gb"] = float(values["size_gb"])
    if base is not None:
        return replace(base, **values)
    if "base_url" in values:
        if not values["base_url"].startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return ModelEntry(name=name, **{"repo": "", "quant": "", "context": 0, **values})
    if "repo" not in values or "quant" not in values or values["repo"].count("/") != 1:
        raise ValueError('a new model needs repo = "owner/name" and quant')
    return ModelEntry(name=name, **{"context": config.DEFAULT_N_CTX, **values})


def _parse(text: str) -> tuple[dict[str, Any], str | None]:
    data = tomllib.loads(text)
    if unknown := sorted(set(data) - {"default", "models"}):
        raise ValueError(f"unknown top-level key {unknown[0]!r} (expected default and [models.NAME] tables)")
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ValueError("default must be a model name")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ValueError("models must be tables: [models.NAME]")
    return models, default


def user_file() -> Path:
    return config.user_dir() / "models.toml"


def load_registry() -> Registry:
    """The bundled registry with the user's file merged over it; a broken user file only warns
    (logged: a caller that needs it twice loads it once and passes it on as `known`)."""
    warn = log.warning
    bundled = resources.files("mmchat").joinpath("models.toml").read_text(encoding="utf-8")
    tables, default = _parse(bundled)
    entries = {name.lower(): _entry(name, table) for name, table in tables.items()}
    assert default is not None and default.lower() in entries, "bundled models.toml needs a valid default"

    path = user_file()
    if path.is_file():
        try:
            tables, user_default = _parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:  # TOMLDecodeError is a ValueError
            warn(f"ignoring {path}: {str(e).splitlines()[0]}")
            return Registry(entries, default)
        for name, table in tables.items():
            try:
                entries[name.lower()] = _entry(name, table, entries.get(name.lower()))
            except (TypeError, ValueError) as e:
                warn(f"ignoring model '{name}' in {path}: {e}")
        if user_default is not None:
            if user_default.lower() in entries:
                default = user_default
            else:
                warn(f"ignoring default '{user_default}' in {path}: no such model (see `mmchat models`)")
    return Registry(entries, default)


# -- choosing files in a repository: the rules are hubfiles' ----------------------------------


def quant_not_found(repo: str, name: str, want: Want, files: dict[str, int | None] | list[str]) -> ModelNotFound:
    """The error for a repository without the quant asked for: the quants it has, nearest in size first."""
    quants = hubfiles.available_quants(files, near=want.quants[0])
    if not quants:
        return ModelNotFound(f"{repo} has no GGUF model files: mmchat runs llama.cpp (*-GGUF) repositories")
    return QuantNotFound(
        f"{repo} has no {want.text} model file: it has {', '.join(quants)} (e.g. `mmchat pull {name} --quant {quants[0]}`)",
        repo,
        want.text,
        quants,
    )


def fallback_notice(repo: str, want: Want, taken: str) -> str:
    return (
        f"{repo} has no {want.text} model file: taking {taken}, the first it has of {', '.join(hubfiles.QUANT_ORDER)}"
    )


# -- resolving names ---------------------------------------------------------------------------


Quant = str | Want | None  # a quant the caller named (str or Want), or None: the registry's


def _parse_hf(spec: str, quant: Quant, registry: Registry) -> tuple[ModelEntry, str, str, Want]:
    """hf:owner/repo[:QUANT] as an entry (the registry's, when it knows the repo), display name, spec, want."""
    repo, _, spec_quant = spec[len(HF_PREFIX) :].partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelNotFound(f"not a Hugging Face repository: {spec}: write hf:owner/name or hf:owner/name:QUANT")
    named = quant or spec_quant or None
    entry = registry.by_repo(repo) or ModelEntry(name=f"{HF_PREFIX}{repo}", repo=repo, quant=config.DEFAULT_QUANT)
    if named is None:  # as llama.cpp's -hf without :QUANT, the default falls back when missing
        return entry, f"{HF_PREFIX}{repo}", f"{HF_PREFIX}{repo}", hubfiles.wanted(entry.quant, named=False)
    want = hubfiles.wanted(named)
    return replace(entry, quant=want.quants[0]), f"{HF_PREFIX}{repo}:{want.text}", f"{HF_PREFIX}{repo}", want


def lookup(model: str, quant: Quant, registry: Registry) -> tuple[ModelEntry, str, str, Want]:
    """(entry, name for messages, spec for pull, the quant wanted) of a registry name or hf: form."""
    if model.lower().startswith(HF_PREFIX):
        return _parse_hf(model, quant, registry)
    entry = registry.get(model)
    if entry is None:
        names = {e.name.lower(): e.name for e in registry.entries.values()}
        close = difflib.get_close_matches(model.lower(), list(names), n=3, cutoff=0.5)
        close += [n for n in names if model.lower() in n and n not in close][: 3 - len(close)]
        hint = f"did you mean {', '.join(names[n] for n in close)}? " if close else ""
        raise ModelNotFound(
            f"unknown model '{model}': {hint}`mmchat models` lists the known ones "
            "(or give a path to a .gguf file, or hf:owner/repo)"
        )
    if not quant:
        return entry, entry.name, entry.name, hubfiles.wanted(entry.quant, named=False)
    want = hubfiles.wanted(quant)
    target = entry.name if want.quants == (entry.quant.upper(),) else f"{entry.name} --quant {want.text}"
    return replace(entry, quant=want.quants[0]), target, entry.name, want


def is_path(model: str | Path) -> bool:
    """A path, as opposed to a registry name or hf:owner/repo: the one place that decides."""
    if isinstance(model, Path):
        return True
    if model.lower().startswith(HF_PREFIX):
        return False
    if model.lower().endswith(".gguf") or "/" in model or os.sep in model or model.startswith(("~", ".")):
        return True
    return Path(model).is_file()  # a bare file name in the current directory


def _cached_files() -> dict[str, dict[str, Path]]:
    """Cached files of each repo (lower-cased id) by name in the repo, `main` first. No network."""
    from huggingface_hub import constants, scan_cache_dir

    if not Path(constants.HF_HUB_CACHE).is_dir():  # nothing downloaded yet
        return {}
    info = scan_cache_dir(constants.HF_HUB_CACHE)  # its default is bound at import; pass today's
    cached: dict[str, dict[str, Path]] = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        files = cached.setdefault(repo.repo_id.lower(), {})
        for revision in sorted(repo.revisions, key=lambda r: ("main" not in r.refs, -r.last_modified)):
            for f in revision.files:
                files.setdefault(f.file_path.relative_to(revision.snapshot_path).as_posix(), f.file_path)
    return cached


def cached_repo_files(repo: str) -> dict[str, Path]:
    """The files of one repository in the Hugging Face cache, by name in the repo. No network."""
    return _cached_files().get(repo.lower(), {})


def _in_cache(entry: ModelEntry, want: Want, cached: dict[str, dict[str, Path]]) -> ModelFiles | None:
    """The cached files the same rules as a pull choose (a registry quant the Hub lacked falls back
    here too, so what a pull fetched is found), or None when any is missing."""
    by_name = cached.get(entry.repo.lower(), {})
    pick = hubfiles.pick_model(sorted(by_name), want)
    if pick.path is None or not all(by_name.get(f) for f in hubfiles.shards(pick.path, by_name)):
        return None
    mmproj = hubfiles.pick_projector(sorted(by_name), pick.path, entry.repo)
    if mmproj is None and entry.modalities:  # a pull was interrupted before the projector
        return None
    return ModelFiles(
        by_name[pick.path], by_name[mmproj] if mmproj else None, entry.name, replace(entry, quant=pick.quant)
    )


def files_of(found: ModelFiles) -> list[Path]:
    """Every file of a downloaded model: its shards in order, then its projector."""
    folder = found.model.parent
    names = sorted(p.name for p in folder.iterdir())
    parts = hubfiles.shards(found.model.name, names)
    return [folder / n for n in parts] + ([found.mmproj] if found.mmproj else [])


def find_local(model: str | Path | None = None, *, quant: Quant = None, known: Registry | None = None) -> ModelFiles:
    """A path, registry name or hf:owner/repo[:QUANT] as local files, without the network (None: the default)."""
    if model is not None and is_path(model):
        path = Path(model).expanduser()
        if path.is_file():
            return ModelFiles(path, None)
        if path.is_dir():
            raise ModelNotFound(f"model path is a directory: {model}: give the .gguf file inside it")
        raise ModelNotFound(f"model file not found: {model}")
    registry = known or load_registry()
    entry, target, spec, want = lookup(str(model or registry.default), quant, registry)
    found = _in_cache(entry, want, _cached_files())
    if found is None:
        raise NotDownloaded(entry, target, spec, quant or (want if want.named else None))
    return found


def served(model: str | None, *, known: Registry | None = None) -> ModelEntry | None:
    """The registry entry of `model` (or of the default) when a server holds it (`base_url`)."""
    if model is not None and (is_path(model) or model.lower().startswith(HF_PREFIX)):
        return None
    registry = known or load_registry()
    entry = registry.get(model or registry.default)
    return entry if entry is not None and entry.base_url else None


def list_models(*, known: Registry | None = None) -> list[tuple[ModelEntry, bool]]:
    """Every registry entry and whether it is downloaded, for `mmchat models`."""
    cached = _cached_files()
    return [
        (e, _in_cache(e, hubfiles.wanted(e.quant, named=False), cached) is not None)
        for e in (known or load_registry()).entries.values()
    ]
