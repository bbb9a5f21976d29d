"""A Python caller's keywords (`Runner.open(n_ctx=4096, video_fps=2, base_url=...)`) checked once into
the option values they name; what names no option is handed back for the caller's own parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from .media import MediaOptions
from .model import LoadOptions, RemoteOptions


@dataclasses.dataclass(frozen=True)
class Keywords:
    load: LoadOptions
    media: MediaOptions
    remote: RemoteOptions
    rest: dict[str, Any]  # keywords of the caller's own (policy=, states=, ...)


def split_keywords(values: Mapping[str, Any], own: tuple[str, ...]) -> Keywords:
    """Each option built once from its keywords over the object given for its kind (`load=`, `media=`,
    `remote=`; one not varied is not built again); a name that is neither an option nor in `own` is a
    clear error."""
    values = dict(values)
    load, media, remote = values.pop("load", None), values.pop("media", None), values.pop("remote", None)
    if media is not None and not isinstance(media, MediaOptions):
        raise InputError(f"media= takes MediaOptions, not {type(media).__name__} (a MediaPolicy is given as policy=)")
    rest = {k: values.pop(k) for k in own if k in values}
    groups: dict[type, dict[str, Any]] = {LoadOptions: {}, RemoteOptions: {}, MediaOptions: {}}
    for kind, group in groups.items():
        group.update({k: values.pop(k) for k in list(values) if k in kind.names()})
    groups[MediaOptions].update(values)  # MediaOptions.build names an unknown one and lists the known
    built = []
    for kind, base in ((LoadOptions, load), (MediaOptions, media), (RemoteOptions, remote)):
        given = groups[kind]
        built.append(kind.build(given, base=base) if given or base is None else base)
    return Keywords(*built, rest=rest)
