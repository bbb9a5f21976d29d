"""How an answer is generated: sampling, length, stops, and the constraint (a schema or a grammar),
and one request's options split out of a caller's keywords; the REPL's /set."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .. import config
from ..errors import InputError
from ..values import Rule, check
from ..values import is_bool as _is_bool
from ..values import number as _number
from ..values import whole as _whole
from .fields import GREEDY_OK, PENALTY, Label, _Options, option, python_label
from .media import MediaOptions


def _stop_ok(v: Any) -> bool:
    return isinstance(v, (tuple, list)) and all(isinstance(s, str) and s for s in v)


@dataclasses.dataclass(frozen=True)
class GenerationOptions(_Options):
    """How one answer is sampled (OpenAI's request fields, llama.cpp's samplers), and what shapes it:
    a JSON schema or a GBNF grammar, kept as given until the engine turns it into its own form."""

    max_tokens: int = option(
        config.DEFAULT_MAX_TOKENS,
        Rule("a whole number >= 1", _whole(1)),
        "Most tokens to generate.",
        flags=("--max-tokens", "-n"),
        type=int,
        example="256",
        settable=True,
    )
    temperature: float = option(
        config.DEFAULT_TEMPERATURE,
        GREEDY_OK,
        "0 is greedy (deterministic).",
        flags=("--temperature", "-t"),
        type=float,
        example="0.7",
        settable=True,
    )
    top_k: int = option(
        config.DEFAULT_TOP_K,
        Rule("a whole number >= 0 (0 is off)", _whole(0)),
        "Top-k sampling (0 = off).",
        flags=("--top-k",),
        type=int,
        example="40",
        settable=True,
    )
    top_p: float = option(
        config.DEFAULT_TOP_P,
        Rule("a number from 0 to 1 (1 is off)", _number(0, 1)),
        "Top-p sampling (1 = off).",
        flags=("--top-p",),
        type=float,
        example="0.9",
        settable=True,
    )
    min_p: float = option(
        config.DEFAULT_MIN_P,
        Rule("a number from 0 to 1 (0 is off)", _number(0, 1)),
        "Min-p sampling (0 = off).",
        flags=("--min-p",),
        type=float,
        example="0.05",
        settable=True,
    )
    repeat_penalty: float = option(
        config.DEFAULT_REPEAT_PENALTY,
        Rule("a number > 0 (1 is off)", _number(above=0)),
        "Repeat penalty (1 = off).",
        flags=("--repeat-penalty",),
        type=float,
        example="1.1",
        settable=True,
    )
    frequency_penalty: float = option(
        config.DEFAULT_FREQUENCY_PENALTY,
        PENALTY,
        "Penalise tokens by how often they already appear (OpenAI's field; 0 = off).",
        flags=("--frequency-penalty",),
        type=float,
        example="0.5",
        settable=True,
    )
    presence_penalty: float = option(
        config.DEFAULT_PRESENCE_PENALTY,
        PENALTY,
        "Penalise tokens that already appear at all (OpenAI's field; 0 = off).",
        flags=("--presence-penalty",),
        type=float,
        example="0.5",
        settable=True,
    )
    ignore_eos: bool = option(
        False,
        Rule("true or false", _is_bool),
        "Keep generating past the end-of-text token, to --max-tokens (benchmarks, as llama.cpp's).",
        flags=("--ignore-eos",),
        type=bool,
    )
    repeat_last_n: int = option(
        config.DEFAULT_REPEAT_LAST_N,
        Rule("a whole number >= 0", _whole(0)),
        "How many recent tokens the penalties look at.",
    )
    seed: int = option(
        config.DEFAULT_SEED,
        Rule("a whole number, -1 for random", _whole(-1)),
        "Sampling seed; -1 picks one at random.",
        flags=("--seed",),
        type=int,
        example="42",
        settable=True,
    )
    stop: tuple[str, ...] = option(
        (),
        Rule("a list of non-empty strings", _stop_ok),
        "Stop generating at this text. Repeatable.",
        flags=("--stop",),
        type=list[str],
    )
    grammar: str | None = option(
        None,
        Rule("GBNF text", lambda v: v is None or isinstance(v, str)),
        "GBNF grammar text that constrains the answer.",
    )
    schema: dict[str, Any] | None = option(
        None,
        Rule("a JSON schema (an object, or its JSON text)", lambda v: v is None or isinstance(v, dict)),
        "JSON schema the answer must follow; each engine gives it its own "
        "form (llama.cpp a grammar, a server its response_format).",
    )

    @classmethod
    def build(
        cls,
        values: Mapping[str, Any] | None = None,
        *,
        label: Label = python_label,
        base: Any = None,
        schema: dict[str, Any] | str | None = None,
    ):
        """`schema=` (or a "schema" value) is kept as the schema itself; a constraint given here
        replaces the base's (a batch line's grammar over the command's --schema)."""
        values = {k: v for k, v in (values or {}).items() if v is not None}
        if schema is not None:
            values["schema"] = schema
        if isinstance(values.get("stop"), str):
            values["stop"] = (values["stop"],)
        elif isinstance(values.get("stop"), list):
            values["stop"] = tuple(values["stop"])
        if "schema" in values:
            from .constraints import read_schema

            values["schema"] = read_schema(values["schema"])
        if base is not None and ("schema" in values) != ("grammar" in values):
            base = dataclasses.replace(base, schema=None, grammar=None)
        return super().build(values, label=label, base=base)

    def __post_init__(self) -> None:
        if isinstance(self.stop, (str, list)):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        if self.schema is not None and not isinstance(self.schema, dict):
            from .constraints import read_schema

            object.__setattr__(self, "schema", read_schema(self.schema))
        if self.schema is not None and self.grammar:
            raise InputError("a schema and a grammar both constrain the answer: give one of them")
        _Options.__post_init__(self)

    @property
    def constrained(self) -> bool:
        """Whether a schema or a grammar shapes the answer."""
        return self.schema is not None or bool(self.grammar)

    @property
    def penalised(self) -> bool:
        """Whether llama.cpp's penalties sampler has anything to do."""
        return self.repeat_penalty != 1.0 or bool(self.frequency_penalty) or bool(self.presence_penalty)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with nothing else to apply: the answer is the largest logit at each step."""
        return self.temperature <= 0 and not self.constrained and not self.penalised


@dataclasses.dataclass(frozen=True)
class RequestOptions:
    """One request's options, split out of the keyword arguments a caller wrote."""

    generation: GenerationOptions
    media: MediaOptions


def split_request(
    values: Mapping[str, Any], *, generation: GenerationOptions | None = None, media: MediaOptions | None = None
) -> RequestOptions:
    """Runner.chat(**values): sampling fields, media fields (video_fps=...), schema= and grammar=."""
    known = (*GenerationOptions.names(), *MediaOptions.names())
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(known)}")
    values = dict(values)
    media_values = {k: values.pop(k) for k in list(values) if k in MediaOptions.names()}
    gen = GenerationOptions.build(values, base=generation)
    return RequestOptions(gen, MediaOptions.build(media_values, base=media or MediaOptions()))


def settings() -> dict[str, dataclasses.Field]:
    """The generation options the REPL's /set changes, by name."""
    return {f.name: f for f in dataclasses.fields(GenerationOptions) if f.metadata.get("settable")}


def parse_setting(name: str, text: str) -> Any:
    """A /set value typed as text: converted to the option's type and checked by its rule."""
    f = settings()[name]
    label = f"/set {name}: "
    try:
        value = f.metadata["type"](text)
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise InputError(f"{label}{text!r} is not valid: give {f.metadata['rule'].text}")
    check(name, value, f.metadata["rule"], label, shown=repr(text))
    return value
