"""The REPL's input language: one line in, one small frozen dataclass out (pure: no terminal).

Plain text is a `Say`. A line starting with `/` is a command; `//` escapes a literal slash.
A line that is nothing but existing file paths (what a terminal pastes when a file is
dragged onto it, often quoted or backslash-escaped) counts as `/attach`. Which commands there are,
and which parser reads each, is the registry's (registry.py): each handler registers its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import shlex
from collections.abc import Callable
from typing import Any, Union

from .. import config
from ..errors import InputError
from ..media import Kind
from ..options import parse_setting, settings
from .registry import REGISTRY
from .registry import command as command  # re-exported: handlers register with @cmd.command
from .registry import handles as handles


class ParseError(InputError):
    """A line the REPL cannot read as a command; the message says what to type instead."""


@dataclasses.dataclass(frozen=True)
class Say:
    text: str


@dataclasses.dataclass(frozen=True)
class Attach:
    urls: tuple[str, ...]
    kind: Kind | None = None  # None: detected from the bytes


@dataclasses.dataclass(frozen=True)
class Paste:
    pass


@dataclasses.dataclass(frozen=True)
class Screenshot:
    monitor: int | None = None  # None: the whole screen


@dataclasses.dataclass(frozen=True)
class Rec:
    seconds: float | None = None  # None: until Enter


@dataclasses.dataclass(frozen=True)
class ListAttachments:
    pass


@dataclasses.dataclass(frozen=True)
class Detach:
    index: int | None = None  # 1-based among pending attachments; None: all


@dataclasses.dataclass(frozen=True)
class Show:
    index: int | None = None  # 1-based among pending attachments; None: all (or the last message's)


@dataclasses.dataclass(frozen=True)
class System:
    text: str | None = None  # None: show the current one; "" clears it


@dataclasses.dataclass(frozen=True)
class Set:
    name: str | None = None  # None: show the current settings
    value: Any = None


@dataclasses.dataclass(frozen=True)
class Model:
    name: str


@dataclasses.dataclass(frozen=True)
class Save:
    path: str
    ref: bool = False  # reference media by path instead of embedding it


@dataclasses.dataclass(frozen=True)
class Load:
    path: str


@dataclasses.dataclass(frozen=True)
class Clear:
    pass


@dataclasses.dataclass(frozen=True)
class Retry:
    pass


@dataclasses.dataclass(frozen=True)
class Undo:
    pass


@dataclasses.dataclass(frozen=True)
class Copy:
    pass


@dataclasses.dataclass(frozen=True)
class Stats:
    pass


@dataclasses.dataclass(frozen=True)
class Help:
    pass


@dataclasses.dataclass(frozen=True)
class Exit:
    pass


Command = Union[
    Say,
    Attach,
    Paste,
    Screenshot,
    Rec,
    ListAttachments,
    Detach,
    Show,
    System,
    Set,
    Model,
    Save,
    Load,
    Clear,
    Retry,
    Undo,
    Copy,
    Stats,
    Help,
    Exit,
]

SETTING_NAMES = (*settings(), "stop")  # what /set changes: the settable GenerationOptions


def help_lines() -> list[str]:
    """One line per command, aligned: what /help prints."""
    specs = REGISTRY.specs()
    usage = {s.name: f"{s.name} {s.usage}".rstrip() for s in specs}
    width = max(map(len, usage.values()))
    return [f"{usage[s.name].ljust(width)}  {s.help}" for s in specs]


def __getattr__(name: str) -> object:
    """Views of the registry under their old names: COMMANDS (name -> (usage, help)), ALIASES
    (alias -> name) and PATH_COMMANDS (the commands whose arguments are paths)."""
    if name == "COMMANDS":
        return {s.name: (s.usage, s.help) for s in REGISTRY.specs()}
    if name == "ALIASES":
        return {alias: s.name for s in REGISTRY.specs() for alias in s.aliases}
    if name == "PATH_COMMANDS":
        return tuple(s.name for s in REGISTRY.specs() if s.paths)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse(line: str, *, is_file: Callable[[str], bool] | None = None) -> Command | None:
    """Read one input line; None for a blank one. Raises ParseError with one clear line."""
    is_file = is_file or _is_file
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return Say(text[1:])
    dropped = _dropped_paths(text, is_file)
    if dropped:
        return Attach(dropped)
    if not text.startswith("/"):
        return Say(text)
    name, _, rest = text.partition(" ")
    if "\n" in name:
        name, _, more = name.partition("\n")
        rest = more + (" " + rest if rest else "")
    name, rest = name.lower(), rest.strip()
    spec = REGISTRY.find(name)
    if spec is None and "/" in name[1:]:  # a path, not a command
        if is_file(name):
            raise ParseError(
                f"{name} is a file, not a command: /attach it, or start the line with // to send it as text"
            )
        raise ParseError(
            f"file not found: {_shown(text)}: check the path, or start the line with // to send it as text"
        )
    if spec is None:
        names = [n for s in REGISTRY.specs() for n in (s.name, *s.aliases)]
        raise ParseError(_unknown(name, names, "command", "/help lists the commands"))
    return spec.parse(spec.name, rest)


def _is_file(token: str) -> bool:
    from ..errors import SourceError
    from ..inputs.part import locate

    try:
        path = locate(token).path
    except SourceError:
        return False
    return path is not None and path.is_file()


def _dropped_paths(text: str, is_file: Callable[[str], bool]) -> tuple[str, ...]:
    """The paths a drag-and-drop pasted, or () when the line is anything else."""
    if "\n" in text:
        return ()
    if _looks_like_path(text) and is_file(text):  # one unquoted path with spaces in it
        return (text,)
    try:
        tokens = shlex.split(text)
    except ValueError:
        return ()
    if tokens and all(_looks_like_path(t) and is_file(t) for t in tokens):
        return tuple(tokens)
    return ()


def _looks_like_path(token: str) -> bool:
    # a bare word like "hello" is a question even if ./hello exists; dropped files are never bare
    return token.startswith(("/", "~", "./", "../", "file://")) or os.sep in token or "/" in token


def _split(name: str, rest: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as e:
        raise ParseError(f"{name}: {str(e).lower()}: close the quote or escape it with a backslash") from None


def _unknown(word: str, choices: list[str], what: str, otherwise: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"unknown {what} {_shown(word)}: " + (f"did you mean {close[0]}?" if close else otherwise)


def _shown(text: str) -> str:
    """The user's words inside a one-line message: quoted when they hold a line break or a control."""
    return text if text.isprintable() else repr(text)


def parse_attach(name: str, rest: str) -> Command:
    urls = _split(name, rest)
    if not urls:
        raise ParseError(f"{name} needs at least one path or URL, e.g. {name} photo.jpg")
    if "-" in urls:
        raise ParseError(f"{name} cannot read standard input in the chat: give a path or URL")
    kind = None if name == "/attach" else name[1:]
    return Attach(tuple(urls), kind)


def parse_screenshot(name: str, rest: str) -> Command:
    if not rest:
        return Screenshot()
    if not rest.isdigit() or int(rest) < 1:
        raise ParseError(
            f"/screenshot takes a monitor's number (1, 2, ...), not {_shown(rest)}: or nothing for the whole screen"
        )
    return Screenshot(int(rest))


def parse_rec(name: str, rest: str) -> Command:
    if not rest:
        return Rec()
    from ..errors import SourceError
    from ..inputs.microphone import seconds_of
    from ..inputs.part import locate

    try:
        return Rec(seconds_of(locate(f"mic:{rest}")))
    except SourceError:
        raise ParseError(
            f"/rec takes a length in seconds (at most {config.DEFAULT_MIC_MAX_SECONDS:g}), e.g. /rec 10, "
            f"not {_shown(rest)}: "
            "or nothing to record until Enter"
        ) from None


def parse_index(name: str, rest: str) -> Command:
    if not rest:
        return Detach() if name == "/detach" else Show()
    try:
        index = int(rest)
    except ValueError:
        index = 0
    if index < 1:
        raise ParseError(f"{name} takes the number of an attachment (1, 2, ...) from /attachments, not {rest!r}")
    return Detach(index) if name == "/detach" else Show(index)


def parse_system(name: str, rest: str) -> Command:
    if not rest:
        return System()
    return System("" if rest == "--clear" else rest)


def parse_set(name: str, rest: str) -> Command:
    if not rest:
        return Set()
    key, _, value = rest.replace("\n", " ").partition(" ")
    key, value = key.lower().replace("-", "_"), value.strip()
    if key not in SETTING_NAMES:
        raise ParseError(_unknown(key, list(SETTING_NAMES), "setting", f"choose one of {', '.join(SETTING_NAMES)}"))
    if key == "stop":  # any number of strings; none clears them
        stops = tuple(s for s in _split(name, value) if s)
        return Set("stop", () if stops in ((), ("none",)) else stops)
    if not value:
        raise ParseError(f"/set {key} needs a value, e.g. /set {key} {settings()[key].metadata['example']}")
    try:
        return Set(key, parse_setting(key, value))
    except InputError as e:
        raise ParseError(str(e)) from None


def parse_model(name: str, rest: str) -> Command:
    args = _split(name, rest)
    if len(args) != 1:
        raise ParseError("/model needs one model name or path, e.g. /model qwen3-vl-4b")
    return Model(args[0])


def parse_save(name: str, rest: str) -> Command:
    args = _split(name, rest)
    ref = "--ref" in args
    paths = [a for a in args if a != "--ref"]
    unknown = [a for a in paths if a.startswith("--")]
    if unknown:
        raise ParseError(f"/save: unknown option {unknown[0]}: the only option is --ref")
    if len(paths) != 1:
        raise ParseError("/save needs one file name, e.g. /save chat.json (add --ref to keep media as paths)")
    return Save(paths[0], ref)


def parse_load(name: str, rest: str) -> Command:
    args = _split(name, rest)
    if len(args) != 1:
        raise ParseError("/load needs one file name, e.g. /load chat.json")
    return Load(args[0])
