"""Options in one place: how a model loads, how media are prepared, how an answer is generated.

Each is a frozen dataclass whose fields carry their default (from `config`), their rule and
their help. Every entry point builds them the same way and so checks them the same way: the
command line (cli/params.py makes the flags from these fields), the REPL's /set, `Runner`
and `Runner.chat`, and request bodies. A new option is one field here, plus its use.

Light on purpose: `mmchat --help` imports this module, so no numpy and no llama_cpp here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from . import config
from .errors import InputError
from .values import PAGES, Rule, check, parse_segment, parse_size
from .values import as_number as _as_number
from .values import is_bool as _is_bool
from .values import number as _number
from .values import whole as _whole

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
        """From keyword values (None means "the default"); an unknown name is a clear error."""
        values = {k: v for k, v in (values or {}).items() if v is not None}
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(cls.names())}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in values.items():  # each value checked as the user named it
            check(name, value, fields[name].metadata.get("rule"), label(fields[name]))
        return dataclasses.replace(base, **values) if base is not None else cls(**values)

    def replace(self, **changes: Any):
        return self.build(changes, base=self)


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
class LoadOptions(_Options):
    """How the model is loaded: fixed for the life of an engine."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "cache_size", parse_size(self.cache_size))

    n_ctx: int = option(
        config.DEFAULT_N_CTX,
        Rule("a whole number >= 16", _whole(16)),
        "Context window in tokens.",
        flags=("--ctx-size", "-c"),
        type=int,
    )
    n_gpu_layers: int | None = option(
        None,
        Rule("a whole number >= 0", _whole(0, optional=True)),
        "Layers to offload to the GPU. [default: all when llama.cpp has a GPU backend, else 0]",
        flags=("--gpu-layers",),
        type=int,
        show_default=False,
    )
    threads: int | None = option(
        None,
        Rule("a whole number >= 1", _whole(1, optional=True)),
        "CPU threads. [default: physical cores]",
        flags=("--threads",),
        type=int,
        show_default=False,
    )
    chat_template: str | None = option(
        None,
        None,
        "Jinja template file or llama.cpp built-in name (e.g. chatml), for GGUFs without one.",
        flags=("--chat-template",),
        type=str,
    )
    image_max_tokens: int | None = option(
        None,
        Rule("a whole number >= 1", _whole(1, optional=True)),
        "Cap on tokens per image for dynamic-resolution models (Qwen-VL).",
        flags=("--image-max-tokens",),
        type=int,
    )
    mmproj_offload: bool = option(
        config.DEFAULT_MMPROJ_OFFLOAD,
        Rule("true or false", _is_bool),
        "Run the projector (image/audio encoder) on the GPU when llama.cpp has one; "
        "--no-mmproj-offload keeps it on the CPU, whatever --gpu-layers says.",
        flags=("--mmproj-offload/--no-mmproj-offload",),
        type=bool,
    )
    cache: bool = option(
        True,
        Rule("true or false", _is_bool),
        "Keep encoded media on disk, so a later run never encodes them again (`mmchat cache`).",
        flags=("--cache/--no-cache",),
        type=bool,
    )
    cache_size: int = option(
        config.DEFAULT_ENCODED_CACHE_BYTES,
        Rule('a size in bytes, or with K, M or G ("2G")', lambda v: parse_size(v) is not None),
        "Most disk the media cache may use (e.g. 500M); the least recently used go first. [default: 4G]",
        flags=("--cache-size",),
        type=str,
        show_default=False,
    )


_MODALITIES = ("image", "audio", "video")
#: the servers mmchat speaks to in their own terms (mmchat.engine.dialects)
SERVER_KINDS = ("llama-server", "llama-cpp-python", "vllm", "sglang", "openai")


def _modalities_ok(v: Any) -> bool:
    return v is None or (isinstance(v, (tuple, list)) and all(m in _MODALITIES for m in v))


def _split_modalities(v: Any) -> Any:
    """--modalities image,audio (or repeated) as a tuple; anything else is left for the rule to refuse."""
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)):
        return tuple(m.strip() for item in v for m in str(item).split(",") if m.strip()) or None
    return v


@dataclasses.dataclass(frozen=True)
class RemoteOptions(_Options):
    """Where the model runs when it is not loaded here: an OpenAI-compatible chat server."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", _split_modalities(self.modalities))
        super().__post_init__()

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, *, label: Label = python_label, base: Any = None):
        values = dict(values or {})
        if "modalities" in values:
            values["modalities"] = _split_modalities(values["modalities"])
        return super().build(values, label=label, base=base)

    base_url: str | None = option(
        None,
        Rule(
            "an http:// or https:// URL",
            lambda v: v is None or (isinstance(v, str) and v.startswith(("http://", "https://"))),
        ),
        "An OpenAI-compatible server (llama-server, vLLM, SGLang) to answer instead of a "
        "local model; --model then names the server's model. [env: MMCHAT_BASE_URL]",
        flags=("--base-url",),
        type=str,
    )
    api_key: str | None = option(
        None,
        None,
        "The server's API key. [env: MMCHAT_API_KEY, then OPENAI_API_KEY]",
        flags=("--api-key",),
        type=str,
        show_default=False,
    )
    timeout: float = option(
        config.DEFAULT_SERVER_TIMEOUT,
        Rule("a number of seconds > 0", _number(above=0)),
        "Seconds a server may take to answer one request.",
        flags=("--timeout",),
        type=float,
    )
    retries: int = option(
        config.DEFAULT_SERVER_RETRIES,
        Rule("a whole number >= 0", _whole(0)),
        "How often a busy (429) or failing (5xx) server is asked again.",
    )
    modalities: tuple[str, ...] | None = option(
        None,
        Rule("a list drawn from image, audio, video", _modalities_ok),
        "What the server's model takes (image,audio,video) when it does not say itself (llama-server's /props does).",
        flags=("--modalities",),
        type=list[str],
        show_default=False,
    )
    server_kind: str | None = option(
        None,
        Rule(f"one of {', '.join(SERVER_KINDS)}", lambda v: v is None or v in SERVER_KINDS),
        "What the server is, when its /v1/models does not say (a proxy in front of "
        f"it): {', '.join(SERVER_KINDS)}. [default: asked]",
        flags=("--server-kind",),
        type=str,
        show_default=False,
    )

    def with_environment(self, environ: Mapping[str, str]) -> RemoteOptions:
        """The one rule for what a flag leaves unset: MMCHAT_BASE_URL, and MMCHAT_API_KEY then OPENAI_API_KEY."""
        values = {
            "base_url": self.base_url or environ.get("MMCHAT_BASE_URL"),
            "api_key": self.api_key or environ.get("MMCHAT_API_KEY") or environ.get("OPENAI_API_KEY"),
        }
        return self.build(values, base=self, label=lambda f: f"MMCHAT_{f.name.upper()} ")


@dataclasses.dataclass(frozen=True)
class MediaOptions(_Options):
    """How media are decoded before the model sees them; a request may change them."""

    image_max_side: int = option(
        config.DEFAULT_IMAGE_MAX_SIDE,
        Rule("a whole number >= 0 (0 = never)", _whole(0)),
        "Scale images down so the long side is at most this many pixels (0 = never).",
        flags=("--image-max-side",),
        type=int,
    )
    video_fps: float = option(
        config.DEFAULT_VIDEO_FPS, VIDEO_FPS, "Video frames sampled per second.", flags=("--fps",), type=float
    )
    video_max_frames: int = option(
        config.DEFAULT_VIDEO_MAX_FRAMES,
        VIDEO_MAX_FRAMES,
        "Most frames per video; more are spread evenly over it.",
        flags=("--max-frames",),
        type=int,
    )
    video_audio: bool = option(
        True,
        Rule("true or false", _is_bool),
        "Give the model a video's soundtrack when it hears.",
        flags=("--video-audio/--no-video-audio",),
        type=bool,
    )
    video_max_side: int = option(
        config.DEFAULT_VIDEO_FRAME_MAX_SIDE,
        Rule("a whole number >= 0 (0 = never)", _whole(0)),
        "Scale video frames down so the long side is at most this many pixels (0 = never).",
        flags=("--frame-max-side",),
        type=int,
    )
    pdf_pages: str | None = option(
        None,
        Rule(
            "pages such as 3, 2-5 or 1,4-6",
            lambda v: v is None or (isinstance(v, str) and PAGES.fullmatch(v.replace(" ", "")) is not None),
        ),
        f"PDF pages to read, e.g. 2-5 (default: the first {config.DEFAULT_PDF_MAX_PAGES}); "
        "a part's URL may say #page=2-5.",
        flags=("--pages",),
        type=str,
        show_default=False,
    )
    url_deadline: float = option(
        config.DEFAULT_URL_DEADLINE,
        Rule("a number of seconds > 0", _number(above=0)),
        "Most seconds one http(s) media URL may take to download, all of it.",
        flags=("--url-deadline",),
        type=float,
    )
    url_speed_limit: int = option(
        config.DEFAULT_URL_SPEED_LIMIT,
        Rule('bytes a second, or with K or M ("1K"); 0 is off', lambda v: parse_size(v) is not None),
        "A media download slower than this (bytes a second; 1K, 10K...) for --speed-time "
        "seconds ends, as curl's; 0 = never. [default: 1K]",
        flags=("--speed-limit",),
        type=str,
        show_default=False,
    )
    url_speed_time: float = option(
        config.DEFAULT_URL_SPEED_TIME,
        Rule("a number of seconds > 0", _number(above=0)),
        "Seconds a media download may stay under --speed-limit.",
        flags=("--speed-time",),
        type=float,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "url_speed_limit", parse_size(self.url_speed_limit))

    def video_defaults(self) -> dict[str, Any]:
        """What a video part without options of its own is sampled with."""
        return {
            "fps": self.video_fps,
            "max_frames": self.video_max_frames,
            "audio": self.video_audio,
            "max_side": self.video_max_side,
        }


@dataclasses.dataclass(frozen=True)
class DisplayOptions(_Options):
    """How attached media are shown in the terminal (never sent anywhere, never in a pipe)."""

    preview: bool | None = option(
        None,
        Rule("true or false", lambda v: v is None or isinstance(v, bool)),
        "Draw attached media as the model gets them. [default: on in chat on a terminal; "
        "ask: off, on stderr when given]",
        flags=("--preview/--no-preview",),
        type=bool,
        show_default=False,
    )
    preview_rows: int = option(
        config.DEFAULT_PREVIEW_ROWS,
        Rule("a whole number >= 1", _whole(1)),
        "Text rows a preview's picture takes.",
        flags=("--preview-rows",),
        type=int,
    )


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How to sample one video: a part's own keys over the request's MediaOptions, checked by the same rules."""

    fps: float = config.DEFAULT_VIDEO_FPS
    max_frames: int = config.DEFAULT_VIDEO_MAX_FRAMES
    start: float | None = None
    end: float | None = None
    audio: bool = True  # decode the soundtrack (the resolver sets False when the model cannot hear)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoOptions:
        """Options of a video part (fps, max_frames, start, end, audio); other keys are the caller's."""
        base = cls()
        fps = _as_number(d.get("fps", base.fps), "fps")
        check("fps", fps, VIDEO_FPS, "video fps ")
        count = d.get("max_frames", base.max_frames)
        check("max_frames", count, VIDEO_MAX_FRAMES, "video max_frames ")
        start, end = parse_segment(d.get("start", base.start), d.get("end", base.end), "video")
        audio = d.get("audio", base.audio)
        check("audio", audio, Rule("true or false", _is_bool), "video audio ")
        return cls(fps=fps, max_frames=count, start=start, end=end, audio=audio)


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


SamplingOptions = GenerationOptions  # the name of the first release
