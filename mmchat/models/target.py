"""What the user named, found once: which backend answers, and with which files.

A model is named as a GGUF path, a registry name, `hf:owner/repo[:QUANT]`, mistral.rs's `Which`,
a models.toml entry served by a server, or any of these beside `--base-url`. `find_target` is the
one function that turns each into a `Target`; the CLI shows its spinner around the call and hands
the target to the Runner, which loads it and never looks for it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelNotFound
from . import hubfiles, pulls, registry

Warn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Target:
    """A local model's files, or the server that answers instead."""

    model: Path | None = None  # a local GGUF (a split model's first part)
    mmproj: Path | None = None  # its projector; None: a text-only model
    base_url: str | None = None  # an OpenAI-compatible server answers instead
    server_model: str | None = None  # the server's id of the model (None: the first it lists)
    modalities: tuple[str, ...] | None = None  # what the server's model takes, when the server cannot say
    name: str | None = None  # the registry entry, when the model has one

    @property
    def remote(self) -> bool:
        return self.base_url is not None


def find_target(
    model: str | Path | None = None,
    mmproj: str | Path | None = None,
    *,
    base_url: str | None = None,
    modalities: Sequence[str] | None = None,
    which: Any = None,
    in_situ_quant: str | int | None = None,
    pull: bool = False,
    progress: bool = True,
    warn: Warn | None = None,
    known: registry.Registry | None = None,
    base_url_from: str | None = None,
) -> Target:
    """The one resolution of a model: a server when there is a base URL (given, or a models.toml
    entry's), else local files (pulled first with pull=True). Nothing is loaded here."""
    kinds = tuple(modalities) if modalities is not None else None
    say = warn or (lambda message: None)
    if which is not None or in_situ_quant is not None:  # mistral.rs's names for a model (which.py)
        if which is None or model is not None or mmproj is not None:
            raise InputError("give a model either as which=Which...(...) (with in_situ_quant=) or as model=/mmproj=")
        if base_url is not None:
            if base_url_from != "MMCHAT_BASE_URL":
                raise InputError(
                    f"which= names model files to load here and base_url= ({base_url}) a server: give one of them"
                )
            say(f"MMCHAT_BASE_URL ({base_url}) is not used: which= names model files, loaded here")
        from .which import find_files

        found = find_files(which, in_situ_quant, progress=progress, warn=warn)
        return Target(found.model, found.mmproj)
    if base_url is not None:
        _unused_mmproj(mmproj, f"{base_url_from or '--base-url'} ({base_url})", say)
        return Target(base_url=base_url, server_model=None if model is None else str(model), modalities=kinds)
    if not isinstance(model, Path):
        entry = registry.served(model, warn=warn, known=known)
        if entry is not None:
            _unused_mmproj(mmproj, f"models.toml's {entry.name} ({entry.base_url})", say)
            return Target(
                base_url=entry.base_url,
                server_model=entry.server_model or None,
                modalities=kinds if kinds is not None else entry.modalities or None,
                name=entry.name,
            )
    files = pulls.find_files(model, pull=pull, progress=progress, warn=warn, known=known)
    if mmproj is None:
        mmproj = files.mmproj or hubfiles.projector_beside(files.model, warn)
        return Target(files.model, mmproj, name=files.name)
    path = Path(mmproj).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"projector file not found: {mmproj}: give the path to an mmproj-*.gguf")
    return Target(files.model, path, name=files.name)


def _unused_mmproj(mmproj: str | Path | None, server: str, say: Warn) -> None:
    """A projector given beside a server: the server encodes media with its own, so say this one is not used."""
    if mmproj is not None:
        say(f"--mmproj {mmproj} is not used: {server} is a server, which encodes media with its own projector")
