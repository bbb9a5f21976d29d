"""The options every model command takes, declared once.

`ask` and `chat` (and the commands that follow them) write only their own parameters and
take a `flags: Flags` argument; `@model_flags` adds the shared flags to their
signature, made from the fields of LoadOptions, MediaOptions, GenerationOptions and RemoteOptions (their
help, flags and defaults), and builds the Flags from what was given. A new option is a
field in options.py: it appears here, in every command, without a line changed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from ..errors import InputError
from ..options import DisplayOptions, GenerationOptions, LoadOptions, MediaOptions, RemoteOptions

if TYPE_CHECKING:
    from ..messages import PartKind  # a type only: `mmchat --help` need not import the message parser

#: a medium's flags, and -i for any file told by its content (messages.PartKind "file")
MEDIA_FLAGS: dict[PartKind, tuple[str, ...]] = {
    "file": ("--input", "-i"),
    "image": ("--image",),
    "audio": ("--audio", "-a"),
    "video": ("--video",),
}
_MEDIA_HELP = {
    "file": "Any file or URL, its kind told by its content: an image, audio, video, PDF or text file "
    "(clipboard:, screen:, mic: too). Repeatable.",
    "image": "Image path or URL (file://, https://, data:, '-'). Repeatable.",
    "audio": "Audio path or URL; mic: records until Enter, mic:10 ten seconds. Repeatable; the order across --image/--audio/--video is kept.",
    "video": "Video path or URL: sampled frames with timestamps, and its sound when the model hears. Repeatable.",
}


@dataclasses.dataclass(frozen=True)
class Flags:
    """What a model command was given besides its own parameters."""

    media: list[tuple[PartKind, str]]  # (kind, url) in command-line order; 'file' for -i
    model: str | None
    mmproj: str | None
    system: str | None
    load: LoadOptions
    decode: MediaOptions
    generation: GenerationOptions
    remote: RemoteOptions
    display: DisplayOptions
    pull: bool
    quiet: bool
    verbose: bool
    no_color: bool


class MediaOrderCommand(TyperCommand):
    """Keeps the raw arguments, so media flags keep their order across kinds."""

    def parse_args(self, ctx, args):
        ctx.meta["mmchat.argv"] = list(args)
        return super().parse_args(ctx, args)


def media_order(argv: list[str], flags: dict[PartKind, tuple[str, ...]] = MEDIA_FLAGS) -> list[PartKind]:
    """The kinds of the media flags in the order they stand on the command line."""
    by_flag = {f: kind for kind, names in flags.items() for f in names}
    order = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in by_flag:
            order.append(by_flag[name])
            if "=" not in arg:
                next(it, None)
    return order


def ordered_media(argv: list[str], given: dict[PartKind, list[str]]) -> list[tuple[PartKind, str]]:
    """(kind, url) pairs in command-line order; falls back to kind order if argv is unclear."""
    pending = {k: list(v) for k, v in given.items()}
    out = []
    for kind in media_order(argv):
        if pending.get(kind):
            out.append((kind, pending[kind].pop(0)))
    for kind, rest in pending.items():
        out.extend((kind, url) for url in rest)
    return out


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _field_params(cls: type) -> dict[str, tuple[str, inspect.Parameter]]:
    """param name -> (field name, parameter) for every field of `cls` that has flags."""
    out = {}
    for f in dataclasses.fields(cls):
        flags = f.metadata.get("flags")
        if not flags:
            continue
        kind = f.metadata["type"]
        kind = Optional[kind] if f.default is None else kind
        name = flags[0].split("/")[0].lstrip("-").replace("-", "_")
        option = typer.Option(*flags, help=f.metadata["help"], show_default=f.metadata["show_default"])
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        out[name] = (f.name, _param(name, Annotated[kind, option], default))
    return out


_GROUPS = {
    "generation": GenerationOptions,
    "load": LoadOptions,
    "decode": MediaOptions,
    "remote": RemoteOptions,
    "display": DisplayOptions,
}
_FIELDS = {group: _field_params(cls) for group, cls in _GROUPS.items()}

_PLAIN = [
    _param(
        "model",
        Annotated[
            Optional[str],
            typer.Option(
                "--model",
                "-m",
                help="Registry name (see `mmchat models`), path to a GGUF, or hf:owner/repo[:QUANT]. [default: the registry's default]",
            ),
        ],
        None,
    ),
    _param(
        "mmproj",
        Annotated[
            Optional[str],
            typer.Option(help="Multimodal projector GGUF. [default: the model's, or the mmproj*.gguf next to it]"),
        ],
        None,
    ),
    _param("system", Annotated[Optional[str], typer.Option(help="System prompt.")], None),
]
_SWITCHES = [
    _param(
        "pull", Annotated[bool, typer.Option("--pull", help="Download the model first if it is not there yet.")], False
    ),
    _param(
        "quiet",
        Annotated[bool, typer.Option("--quiet", "-q", help="No notices or progress on stderr (warnings still).")],
        False,
    ),
    _param(
        "verbose",
        Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's own log and stats on stderr.")],
        False,
    ),
    _param(
        "no_color",
        Annotated[bool, typer.Option("--no-color", help="No colour or Markdown styling (also NO_COLOR=1).")],
        False,
    ),
]
_MEDIA = [
    _param(kind, Annotated[list[str], typer.Option(*flags, help=_MEDIA_HELP[kind])], [])
    for kind, flags in MEDIA_FLAGS.items()
]
_DISPLAY = [p for _, p in _FIELDS["display"].values()]
_REMOTE = [p for _, p in _FIELDS["remote"].values()]
SHARED = [*_MEDIA, *_PLAIN, *(p for group in _FIELDS.values() for _, p in group.values()), *_SWITCHES]


def _flag_label(f: dataclasses.Field) -> str:
    return f"{f.metadata['flags'][0]} "


def _flags(ctx: typer.Context, values: dict[str, Any]) -> Flags:
    media = ordered_media(ctx.meta.get("mmchat.argv", []), {k: values.pop(k) for k in MEDIA_FLAGS})
    built = {
        group: _GROUPS[group].build(
            {fname: values.pop(pname) for pname, (fname, _) in fields.items()}, label=_flag_label
        )
        for group, fields in _FIELDS.items()
    }
    return Flags(media=media, **built, **values)


def model_flags(command: Callable[..., Any] | None = None, *, media: bool = True, remote: bool = True) -> Any:
    """Give `command` (whose first parameter is `ctx`) the shared flags, as one `flags` argument.

    `media=False` leaves out --image/--audio/--video (`batch` takes its media as files, and its
    -i is the requests file, as in OpenAI's and vLLM's batch tools) and the previews of them.
    `remote=False` leaves out --base-url, --api-key and the other server flags (`serve` is the
    server: its --api-key is the key its clients must give).
    """
    if command is None:
        return functools.partial(model_flags, media=media, remote=remote)
    sig = inspect.signature(command, eval_str=True)  # real Annotated objects, as typer reads them
    own = [
        p if p.name == "ctx" else p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in sig.parameters.values()
        if p.name != "flags"
    ]
    shared_params = SHARED if media else [p for p in SHARED if p not in _MEDIA and p not in _DISPLAY]
    if not remote:
        shared_params = [p for p in shared_params if p not in _REMOTE]
    names = [p.name for p in shared_params]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        shared = {n: kwargs.pop(n) for n in names}
        shared.update({kind: [] for kind in MEDIA_FLAGS if kind not in shared})
        shared.update({p.name: p.default for p in (*_DISPLAY, *_REMOTE) if p.name not in shared})
        return command(**kwargs, flags=_flags(kwargs["ctx"], shared))

    arguments = [p for p in own if p.name == "ctx" or isinstance(_typer_info(p), typer.models.ArgumentInfo)]
    wrapper.__signature__ = sig.replace(
        parameters=[*arguments, *shared_params, *(p for p in own if p not in arguments)]
    )
    return wrapper


def _typer_info(p: inspect.Parameter) -> Any:
    metadata = getattr(p.annotation, "__metadata__", ())
    return metadata[0] if metadata else None


# -- files named by flags ------------------------------------------------------------------


def constrained(generation: GenerationOptions, schema: str | None, grammar: str | None) -> GenerationOptions:
    """The generation options with --schema or --grammar (files or text) applied."""
    if schema and grammar:
        raise InputError("--schema and --grammar both constrain the answer: give one of them")
    return generation.build({"grammar": grammar_text(grammar)}, base=generation, schema=schema_text(schema))


def grammar_text(grammar: str | None) -> str | None:
    """--grammar FILE: the GBNF text in it."""
    if grammar is None:
        return None
    path = Path(grammar).expanduser()
    if not path.is_file():
        raise InputError(f"grammar file not found: {grammar}: give a GBNF file")
    return path.read_text(encoding="utf-8")


def schema_text(schema: str | None) -> str | None:
    """--schema: JSON text itself, or a file holding it."""
    if schema is None or schema.lstrip().startswith("{"):
        return schema  # JSON itself (and often longer than a file name may be)
    path = Path(schema).expanduser()
    if not path.is_file():
        raise InputError(f"--schema is neither a JSON file nor JSON text: {schema[:60]}")
    return path.read_text(encoding="utf-8")
