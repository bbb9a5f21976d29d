"""The REPL's commands, each registered once, beside its handler (pure: no terminal).

`@command("/undo", help="remove your last message and its answer")` on a handler binds the name, its
usage, its help line, its parser and the handler itself. /help, completion (of names and of path
arguments), parsing and dispatch all read the one `REGISTRY`, so a new command is one decorated
handler (and the frozen dataclass it takes, in commands.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Mapping

Parser = Callable[[str, str], object]  # (the name typed, the rest of the line) -> the command's value
Handler = Callable[..., bool | None]  # (the chat, the command's value) -> True to leave the chat
HANDLERS_MODULE = "mmchat.chat.session"  # imports every module whose handlers register commands


@dataclasses.dataclass(frozen=True)
class Spec:
    """One command: what /help shows, how its line is read, and what runs it."""

    name: str
    usage: str
    help: str
    parse: Parser
    handler: Handler
    takes: type
    paths: bool = False  # its arguments are file paths (the REPL completes them)
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)  # alias -> its completion hint


class Registry:
    """Commands by name, in the order they were registered (the order /help lists them in);
    handlers by the type of value they take, for dispatch."""

    def __init__(self, load: Callable[[], object]):
        self._specs: dict[str, Spec] = {}
        self._handlers: dict[type, Handler] = {}
        self._load, self._loaded = load, False

    def add(self, spec: Spec) -> None:
        names = [spec.name, *spec.aliases]
        taken = [n for n in names if self.find(n, load=False) is not None]
        if taken:
            raise ValueError(f"REPL command {taken[0]} is registered twice")
        items = list(self._specs.items())
        # stacked decorators run bottom-up: the name written above its handler's others goes first
        at = next((i for i, (_, s) in enumerate(items) if s.handler is spec.handler), len(items))
        items.insert(at, (spec.name, spec))
        self._specs = dict(items)
        self.handles(spec.takes, spec.handler)

    def handles(self, takes: type, handler: Handler) -> None:
        """Bind a handler to a type of value: a command's, or a plain message's (no name)."""
        if self._handlers.get(takes, handler) is not handler:
            raise ValueError(f"{takes.__name__} has two handlers")
        self._handlers[takes] = handler

    def remove(self, name: str) -> None:
        """Unregister a command (and its handler, unless another command shares it)."""
        spec = self._specs.pop(name)
        if not any(s.takes is spec.takes for s in self._specs.values()):
            self._handlers.pop(spec.takes, None)

    def specs(self) -> list[Spec]:
        self._ensure()
        return list(self._specs.values())

    def find(self, name: str, *, load: bool = True) -> Spec | None:
        """The command a name or an alias stands for; None when there is none."""
        if load:
            self._ensure()
        for spec in self._specs.values():
            if name == spec.name or name in spec.aliases:
                return spec
        return None

    def handler(self, value: object) -> Handler:
        self._ensure()
        try:
            return self._handlers[type(value)]
        except KeyError:
            raise LookupError(f"no REPL handler takes {type(value).__name__}") from None

    def _ensure(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._load()


REGISTRY = Registry(lambda: importlib.import_module(HANDLERS_MODULE))


def command(
    name: str,
    usage: str = "",
    help: str = "",
    *,
    parse: Parser | None = None,
    paths: bool = False,
    aliases: Mapping[str, str] | None = None,
    registry: Registry = REGISTRY,
) -> Callable[[Handler], Handler]:
    """Register the decorated handler as the REPL command `name`. It takes the value its second
    parameter is annotated with; `parse(name, rest)` makes that value from the line (default: the
    command takes no arguments). Stack it to give one handler several names (/image, /audio)."""

    def register(handler: Handler) -> Handler:
        takes = _takes(handler)
        read = parse or no_arguments(takes)
        registry.add(Spec(name, usage, help, read, handler, takes, paths, dict(aliases or {})))
        return handler

    return register


def handles(takes: type, registry: Registry = REGISTRY) -> Callable[[Handler], Handler]:
    """Register the decorated handler for values that no command name makes (a plain message)."""

    def register(handler: Handler) -> Handler:
        registry.handles(takes, handler)
        return handler

    return register


def no_arguments(takes: type) -> Parser:
    def parse(name: str, rest: str) -> object:
        if rest:
            from .commands import ParseError

            raise ParseError(f"{name} takes no arguments: type just {name}")
        return takes()

    return parse


def _takes(handler: Handler) -> type:
    """The type of the handler's command parameter (after self), from its annotation."""
    hints = typing.get_type_hints(handler)
    hints.pop("return", None)
    params = list(hints.values())
    if len(params) != 1 or not isinstance(params[0], type):
        raise TypeError(f"{handler.__qualname__}: annotate its one command parameter with the value it takes")
    return params[0]
