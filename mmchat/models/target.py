"""What the user named, found once: which backend answers, and with which files.

A model is named as a GGUF path, a registry name, `hf:owner/repo[:QUANT]`, mistral.rs's `Which`,
a models.toml entry served by a server, or any of these beside `--base-url`. `find_target` is the
one function that turns each into a `Target`: `Local` files loaded here, or a `Server` that answers
instead, with everything needed to reach it. The environment (MMCHAT_BASE_URL, MMCHAT_API_KEY,
OPENAI_API_KEY, MMCHAT_MODEL) is read here from the mapping the edge passes (the CLI its
Environment's, `Runner.open` the process's), and nowhere else. The CLI shows its spinner around the
call and hands the target to the Runner, which loads it and never looks for it again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from .. import config
from ..errors import InputError, ModelNotFound
from ..options import RemoteOptions
from ..values import check
from . import hubfiles, pulls, registry

if TYPE_CHECKING:
    from .which import WhichModel

log = logging.getLogger("mmchat.models")


@dataclasses.dataclass(frozen=True)
class Local:
    """A model's files, loaded here by llama.cpp."""

    model: Path  # a GGUF (a split model's first part)
    mmproj: Path | None = None  # its projector; None: a text-only model
    name: str | None = None  # the registry entry, when the model has one


@dataclasses.dataclass(frozen=True)
class Server:
    """An OpenAI-compatible server that answers instead, and how to talk to it."""

    url: str
    model: str | None = None  # the server's id of the model (None: the first it lists)
    api_key: str | None = None
    kind: str | None = None  # llama-server, vllm, ... when the server cannot say (options.SERVER_KINDS)
    modalities: tuple[str, ...] | None = None  # what the model takes, when the server cannot say
    timeout: float = config.DEFAULT_SERVER_TIMEOUT
    retries: int = config.DEFAULT_SERVER_RETRIES
    name: str | None = None  # the models.toml entry, when it has one


Target: TypeAlias = Local | Server


def find_target(
    model: str | Path | None = None,
    mmproj: str | Path | None = None,
    *,
    remote: RemoteOptions | None = None,
    environ: Mapping[str, str] | None = None,
    which: WhichModel | None = None,
    in_situ_quant: str | int | None = None,
    pull: bool = False,
    progress: bool = True,
    known: registry.Registry | None = None,
    base_url_from: str = "base_url=",
) -> Target:
    """The one resolution of a model: a server when there is a base URL (given, MMCHAT_BASE_URL, or a
    models.toml entry's), else local files (pulled first with pull=True). Nothing is loaded here.
    `base_url_from` names how `remote.base_url` was given (`--base-url` on the command line)."""
    remote = remote or RemoteOptions()
    environ = environ or {}
    base_url, named = remote.base_url, base_url_from
    if base_url is None and environ.get("MMCHAT_BASE_URL"):
        base_url, named = environ["MMCHAT_BASE_URL"], "MMCHAT_BASE_URL"
        check("base_url", base_url, _rule("base_url"), "MMCHAT_BASE_URL ")
    api_key = remote.api_key or environ.get("MMCHAT_API_KEY") or environ.get("OPENAI_API_KEY") or None
    server = Server(
        url=base_url or "",
        model=None if model is None else str(model),
        api_key=api_key,
        kind=remote.server_kind,
        modalities=remote.modalities,
        timeout=remote.timeout,
        retries=remote.retries,
    )
    if which is not None or in_situ_quant is not None:  # mistral.rs's names for a model (which.py)
        return _by_which(which, in_situ_quant, model, mmproj, base_url, named, progress)
    if base_url is not None:
        _unused_mmproj(mmproj, f"{named} ({base_url})")
        return server
    model = model if model not in (None, "") else environ.get(registry.ENV_MODEL) or None
    if not (isinstance(model, Path) or (model is not None and registry.is_path(model))):
        known = known or registry.load_registry()  # once: a broken user file warns once
        entry = registry.served(None if model is None else str(model), known=known)
        if entry is not None:
            _unused_mmproj(mmproj, f"models.toml's {entry.name} ({entry.base_url})")
            return dataclasses.replace(
                server,
                url=entry.base_url,
                model=entry.server_model or None,
                modalities=server.modalities if server.modalities is not None else entry.modalities or None,
                name=entry.name,
            )
    return _local(model, mmproj, pull=pull, progress=progress, known=known)


def _by_which(
    which: WhichModel | None,
    in_situ_quant: str | int | None,
    model: str | Path | None,
    mmproj: str | Path | None,
    base_url: str | None,
    named: str,
    progress: bool,
) -> Local:
    """`which=Which...(...)`: files to load here, so a base URL from the environment is set aside (said)."""
    if which is None or model is not None or mmproj is not None:
        raise InputError("give a model either as which=Which...(...) (with in_situ_quant=) or as model=/mmproj=")
    if base_url is not None:
        if named != "MMCHAT_BASE_URL":
            raise InputError(
                f"which= names model files to load here and base_url= ({base_url}) a server: give one of them"
            )
        log.warning(f"MMCHAT_BASE_URL ({base_url}) is not used: which= names model files, loaded here")
    from .which import find_files

    found = find_files(which, in_situ_quant, progress=progress)
    return Local(found.model, found.mmproj)


def _local(
    model: str | Path | None, mmproj: str | Path | None, *, pull: bool, progress: bool, known: registry.Registry | None
) -> Local:
    """Files on this machine (pulled first with pull=True); the projector beside the model when none is named."""
    files = pulls.find_files(model, pull=pull, progress=progress, known=known)
    if mmproj is None:
        return Local(files.model, files.mmproj or hubfiles.projector_beside(files.model), name=files.name)
    path = Path(mmproj).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"projector file not found: {mmproj}: give the path to an mmproj-*.gguf")
    return Local(files.model, path, name=files.name)


def _rule(name: str):
    return next(f.metadata.get("rule") for f in dataclasses.fields(RemoteOptions) if f.name == name)


def _unused_mmproj(mmproj: str | Path | None, server: str) -> None:
    """A projector given beside a server: the server encodes media with its own, so say this one is not used."""
    if mmproj is not None:
        log.warning(f"--mmproj {mmproj} is not used: {server} is a server, which encodes media with its own projector")
