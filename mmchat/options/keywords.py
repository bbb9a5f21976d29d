"""A Python caller's keywords (`Runner.open(n_ctx=4096, video_fps=2, base_url=...)`) checked once into
the option values they name."""

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
    remote: RemoteOptions | None  # None: no keyword names a server (find_target's default)


def split_keywords(values: Mapping[str, Any]) -> Keywords:
    """Each option built once from its keywords over the object given for its kind (`load=`, `media=`,
    `remote=`; one not varied is that object itself); a name that is no option is a clear error."""
    values = dict(values)
    load, media, remote = values.pop("load", None), values.pop("media", None), values.pop("remote", None)
    if media is not None and not isinstance(media, MediaOptions):
        raise InputError(f"media= takes MediaOptions, not {type(media).__name__} (a MediaPolicy is given as policy=)")
    load_values = {k: values.pop(k) for k in list(values) if k in LoadOptions.names()}
    remote_values = {k: values.pop(k) for k in list(values) if k in RemoteOptions.names()}
    return Keywords(
        LoadOptions.build(load_values, base=load),
        MediaOptions.build(values, base=media),  # the rest: an unknown name fails here, the known ones listed
        RemoteOptions.build(remote_values, base=remote) if remote_values or remote is not None else None,
    )
