"""How an option is declared once: its default, rule, help and flags in the field, and the
building and checking every options class shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InputError
from ..values import Rule, check
from ..values import number as _number
from ..values import whole as _whole

GREEDY_OK = Rule("a number >= 0 (0 is greedy)", _number(0))
PENALTY = Rule("a number from -2 to 2 (0 is off)", _number(-2, 2))
VIDEO_FPS = Rule("a number > 0", _number(above=0))
VIDEO_MAX_FRAMES = Rule("a whole number >= 1", _whole(1))


def option(
    default: Any,
    rule: Rule | None,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    type: Any = None,
    example: str = "",
    settable: bool = False,
    show_default: bool = True,
) -> Any:
    """A field with what the CLI, /set and the checks need to know about it."""
    meta = {
        "rule": rule,
        "help": help,
        "flags": flags,
        "type": type,
        "example": example,
        "settable": settable,
        "show_default": show_default,
    }
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


Label = Callable[[dataclasses.Field], str]


def python_label(f: dataclasses.Field) -> str:
    return f"{f.name}="


class _Options:
    """Shared behaviour: checked on construction, built from keyword values, changed by copy."""

    def __post_init__(self) -> None:
        self._check(python_label)

    def _check(self, label: Label) -> None:
        for f in dataclasses.fields(self):
            check(f.name, getattr(self, f.name), f.metadata.get("rule"), label(f))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, *, label: Label = python_label, base: Any = None):
        """From keyword values (None means "the default"); an unknown name is a clear error. With nothing
        to change, `base` itself: a value is built once at its edge and carried, not rebuilt at each step."""
        values = {k: v for k, v in (values or {}).items() if v is not None}
        if not values and base is not None:
            return base
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(cls.names())}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in values.items():  # each value checked as the user named it
            check(name, value, fields[name].metadata.get("rule"), label(fields[name]))
        return dataclasses.replace(base, **values) if base is not None else cls(**values)

    def replace(self, **changes: Any):
        return self.build(changes, base=self)
