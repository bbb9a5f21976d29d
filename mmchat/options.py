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
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import config
from .errors import InputError


@dataclasses.dataclass(frozen=True)
class Rule:
    """What values an option takes, said the way an error message needs it."""

    text: str  # "a number from 0 to 1 (1 is off)"
    ok: Callable[[Any], bool]


def _number(low: float | None = None, high: float | None = None, *, above: float | None = None) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (low is None or v >= low) and (high is None or v <= high) and (above is None or v > above)

    return ok


def _whole(low: int, *, optional: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if v is None:
            return optional
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    return ok


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


GREEDY_OK = Rule("a number >= 0 (0 is greedy)", _number(0))
PENALTY = Rule("a number from -2 to 2 (0 is off)", _number(-2, 2))
VIDEO_FPS = Rule("a number > 0", _number(above=0))
VIDEO_MAX_FRAMES = Rule("a whole number >= 1", _whole(1))


def option(default: Any, rule: Rule | None, help: str, *, flags: tuple[str, ...] = (), type: Any = None,
           example: str = "", settable: bool = False, show_default: bool = True) -> Any:
    """A field with what the CLI, /set and the checks need to know about it."""
    meta = {"rule": rule, "help": help, "flags": flags, "type": type, "example": example, "settable": settable,
            "show_default": show_default}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check(name: str, value: Any, rule: Rule | None, label: str, shown: str | None = None) -> None:
    """Raise one clear InputError when `value` breaks `rule`; `label` says how the user wrote the name."""
    if rule is not None and not rule.ok(value):
        raise InputError(f"{label}{shown if shown is not None else repr(value)} is not valid: give {rule.text}")


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
    """How one answer is sampled (OpenAI's request fields, llama.cpp's samplers)."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, (str, list)):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        super().__post_init__()

    max_tokens: int = option(config.DEFAULT_MAX_TOKENS, Rule("a whole number >= 1", _whole(1)), "Most tokens to generate.",
                             flags=("--max-tokens", "-n"), type=int, example="256", settable=True)
    temperature: float = option(config.DEFAULT_TEMPERATURE, GREEDY_OK, "0 is greedy (deterministic).",
                                flags=("--temperature", "-t"), type=float, example="0.7", settable=True)
    top_k: int = option(config.DEFAULT_TOP_K, Rule("a whole number >= 0 (0 is off)", _whole(0)), "Top-k sampling (0 = off).",
                        flags=("--top-k",), type=int, example="40", settable=True)
    top_p: float = option(config.DEFAULT_TOP_P, Rule("a number from 0 to 1 (1 is off)", _number(0, 1)),
                          "Top-p sampling (1 = off).", flags=("--top-p",), type=float, example="0.9", settable=True)
    min_p: float = option(config.DEFAULT_MIN_P, Rule("a number from 0 to 1 (0 is off)", _number(0, 1)),
                          "Min-p sampling (0 = off).", flags=("--min-p",), type=float, example="0.05", settable=True)
    repeat_penalty: float = option(config.DEFAULT_REPEAT_PENALTY, Rule("a number > 0 (1 is off)", _number(above=0)),
                                   "Repeat penalty (1 = off).", flags=("--repeat-penalty",), type=float, example="1.1",
                                   settable=True)
    frequency_penalty: float = option(config.DEFAULT_FREQUENCY_PENALTY, PENALTY,
                                      "Penalise tokens by how often they already appear (OpenAI's field; 0 = off).",
                                      flags=("--frequency-penalty",), type=float, example="0.5", settable=True)
    presence_penalty: float = option(config.DEFAULT_PRESENCE_PENALTY, PENALTY,
                                     "Penalise tokens that already appear at all (OpenAI's field; 0 = off).",
                                     flags=("--presence-penalty",), type=float, example="0.5", settable=True)
    ignore_eos: bool = option(False, Rule("true or false", _is_bool),
                              "Keep generating past the end-of-text token, to --max-tokens (benchmarks, as llama.cpp's).",
                              flags=("--ignore-eos",), type=bool)
    repeat_last_n: int = option(config.DEFAULT_REPEAT_LAST_N, Rule("a whole number >= 0", _whole(0)),
                                "How many recent tokens the penalties look at.")
    seed: int = option(config.DEFAULT_SEED, Rule("a whole number, -1 for random", _whole(-1)),
                       "Sampling seed; -1 picks one at random.", flags=("--seed",), type=int, example="42", settable=True)
    stop: tuple[str, ...] = option((), Rule("a list of non-empty strings", _stop_ok), "Stop generating at this text. Repeatable.",
                                   flags=("--stop",), type=list[str])
    grammar: str | None = option(None, Rule("GBNF text", lambda v: v is None or isinstance(v, str)),
                                 "GBNF grammar text that constrains the answer.")

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, *, label: Label = python_label, base: Any = None,
              schema: dict[str, Any] | str | None = None):
        values = dict(values or {})
        if isinstance(values.get("stop"), str):
            values["stop"] = (values["stop"],)
        elif isinstance(values.get("stop"), list):
            values["stop"] = tuple(values["stop"])
        if schema is not None:
            if values.get("grammar"):
                raise InputError("a schema and a grammar both constrain the answer: give one of them")
            from .constraints import schema_grammar

            values["grammar"] = schema_grammar(schema)
        return super().build(values, label=label, base=base)


    @property
    def penalised(self) -> bool:
        """Whether llama.cpp's penalties sampler has anything to do."""
        return self.repeat_penalty != 1.0 or bool(self.frequency_penalty) or bool(self.presence_penalty)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with nothing else to apply: the answer is the largest logit at each step."""
        return self.temperature <= 0 and not self.grammar and not self.penalised


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", re.IGNORECASE)


def parse_size(value: Any) -> int | None:
    """Bytes from 1073741824, "2G", "500M", "1.5GiB"; None when it is none of those."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))


@dataclasses.dataclass(frozen=True)
class LoadOptions(_Options):
    """How the model is loaded: fixed for the life of an engine."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "cache_size", parse_size(self.cache_size))

    n_ctx: int = option(config.DEFAULT_N_CTX, Rule("a whole number >= 16", _whole(16)), "Context window in tokens.",
                        flags=("--ctx-size", "-c"), type=int)
    n_gpu_layers: int | None = option(None, Rule("a whole number >= 0", _whole(0, optional=True)),
                                      "Layers to offload to the GPU. [default: all when llama.cpp has a GPU backend, else 0]",
                                      flags=("--gpu-layers",), type=int, show_default=False)
    threads: int | None = option(None, Rule("a whole number >= 1", _whole(1, optional=True)),
                                 "CPU threads. [default: physical cores]", flags=("--threads",), type=int,
                                 show_default=False)
    chat_template: str | None = option(None, None, "Jinja template file or llama.cpp built-in name (e.g. chatml), for GGUFs without one.",
                                       flags=("--chat-template",), type=str)
    image_max_tokens: int | None = option(None, Rule("a whole number >= 1", _whole(1, optional=True)),
                                          "Cap on tokens per image for dynamic-resolution models (Qwen-VL).",
                                          flags=("--image-max-tokens",), type=int)
    cache: bool = option(True, Rule("true or false", _is_bool),
                         "Keep encoded media on disk, so a later run never encodes them again (`mmchat cache`).",
                         flags=("--cache/--no-cache",), type=bool)
    cache_size: int = option(config.DEFAULT_ENCODED_CACHE_BYTES,
                             Rule('a size in bytes, or with K, M or G ("2G")', lambda v: parse_size(v) is not None),
                             "Most disk the media cache may use (e.g. 500M); the least recently used go first. [default: 4G]",
                             flags=("--cache-size",), type=str, show_default=False)


_MODALITIES = ("image", "audio", "video")


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

    base_url: str | None = option(None, Rule("an http:// or https:// URL", lambda v: v is None or (
                                      isinstance(v, str) and v.startswith(("http://", "https://")))),
                                  "An OpenAI-compatible server (llama-server, vLLM, SGLang) to answer instead of a "
                                  "local model; --model then names the server's model. [env: MMCHAT_BASE_URL]",
                                  flags=("--base-url",), type=str)
    api_key: str | None = option(None, None, "The server's API key. [env: MMCHAT_API_KEY, then OPENAI_API_KEY]",
                                 flags=("--api-key",), type=str, show_default=False)
    timeout: float = option(config.DEFAULT_SERVER_TIMEOUT, Rule("a number of seconds > 0", _number(above=0)),
                            "Seconds a server may take to answer one request.", flags=("--timeout",), type=float)
    retries: int = option(config.DEFAULT_SERVER_RETRIES, Rule("a whole number >= 0", _whole(0)),
                          "How often a busy (429) or failing (5xx) server is asked again.")
    modalities: tuple[str, ...] | None = option(None, Rule("a list drawn from image, audio, video", _modalities_ok),
                                                "What the server's model takes (image,audio,video) when it does not "
                                                "say itself (llama-server's /props does).",
                                                flags=("--modalities",), type=list[str], show_default=False)


@dataclasses.dataclass(frozen=True)
class MediaOptions(_Options):
    """How media are decoded before the model sees them; a request may change them."""

    image_max_side: int = option(config.DEFAULT_IMAGE_MAX_SIDE, Rule("a whole number >= 0 (0 = never)", _whole(0)),
                                 "Scale images down so the long side is at most this many pixels (0 = never).",
                                 flags=("--image-max-side",), type=int)
    video_fps: float = option(config.DEFAULT_VIDEO_FPS, VIDEO_FPS,
                              "Video frames sampled per second.", flags=("--fps",), type=float)
    video_max_frames: int = option(config.DEFAULT_VIDEO_MAX_FRAMES, VIDEO_MAX_FRAMES,
                                   "Most frames per video; more are spread evenly over it.", flags=("--max-frames",), type=int)
    video_audio: bool = option(True, Rule("true or false", _is_bool),
                               "Give the model a video's soundtrack when it hears.",
                               flags=("--video-audio/--no-video-audio",), type=bool)
    video_max_side: int = option(config.DEFAULT_VIDEO_FRAME_MAX_SIDE, Rule("a whole number >= 0 (0 = never)", _whole(0)),
                                 "Scale video frames down so the long side is at most this many pixels (0 = never).",
                                 flags=("--frame-max-side",), type=int)
    url_deadline: float = option(config.DEFAULT_URL_DEADLINE, Rule("a number of seconds > 0", _number(above=0)),
                                 "Most seconds one http(s) media URL may take to download, all of it.",
                                 flags=("--url-deadline",), type=float)

    def video_defaults(self) -> dict[str, Any]:
        """What a video part without options of its own is sampled with."""
        return {"fps": self.video_fps, "max_frames": self.video_max_frames, "audio": self.video_audio,
                "max_side": self.video_max_side}


@dataclasses.dataclass(frozen=True)
class DisplayOptions(_Options):
    """How attached media are shown in the terminal (never sent anywhere, never in a pipe)."""

    preview: bool | None = option(None, Rule("true or false", lambda v: v is None or isinstance(v, bool)),
                                  "Draw attached media as the model gets them. [default: on in chat on a terminal; "
                                  "ask: off, on stderr when given]", flags=("--preview/--no-preview",), type=bool,
                                  show_default=False)
    preview_rows: int = option(config.DEFAULT_PREVIEW_ROWS, Rule("a whole number >= 1", _whole(1)),
                               "Text rows a preview's picture takes.", flags=("--preview-rows",), type=int)


_TIME = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)")


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How to sample one video: a part's own keys over the request's MediaOptions, checked by the same rules."""

    fps: float = config.DEFAULT_VIDEO_FPS
    max_frames: int = config.DEFAULT_VIDEO_MAX_FRAMES
    start: float | None = None
    end: float | None = None
    audio: bool = True  # decode the soundtrack (the resolver sets False when the model cannot hear)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], defaults: VideoOptions | None = None) -> VideoOptions:
        """Options of a video part (fps, max_frames, start, end, audio); other keys are the caller's."""
        base = defaults or cls()
        fps = _as_number(d.get("fps", base.fps), "fps")
        check("fps", fps, VIDEO_FPS, "video fps ")
        count = d.get("max_frames", base.max_frames)
        check("max_frames", count, VIDEO_MAX_FRAMES, "video max_frames ")
        start, end = parse_segment(d.get("start", base.start), d.get("end", base.end), "video")
        audio = d.get("audio", base.audio)
        check("audio", audio, Rule("true or false", _is_bool), "video audio ")
        return cls(fps=fps, max_frames=count, start=start, end=end, audio=audio)


def parse_segment(start: Any, end: Any, what: str) -> tuple[float | None, float | None]:
    """A part's start and end (seconds or mm:ss, each optional) as seconds; the end after the start."""
    start, end = (None if v is None else parse_time(v) for v in (start, end))
    if end is not None and end <= (start or 0.0):
        raise InputError(f"{what} end ({end:g} s) must come after its start ({start or 0:g} s)")
    return start, end


def parse_time(value: str | float) -> float:
    """Seconds from 90, "90", "1:30" or "01:02:03.5"."""
    if not isinstance(value, str):
        seconds = _as_number(value, "time")
        if seconds < 0:
            raise InputError(f"a video time cannot be negative ({value!r}): count seconds from the start")
        return seconds
    match = _TIME.fullmatch(value.strip())
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups()) if match else (0, 0, 0)
    if match is None or (match.group(2) and seconds >= 60) or (match.group(1) and minutes >= 60):
        raise InputError(f"cannot read {value!r} as a time: use seconds (90), mm:ss (1:30) or hh:mm:ss")
    return hours * 3600 + minutes * 60 + seconds


def _as_number(value: Any, what: str) -> float:
    """A number from a JSON body, which may carry it as text ("2")."""
    try:
        if not isinstance(value, bool) and math.isfinite(number := float(value)):
            return number
    except (TypeError, ValueError):
        pass
    raise InputError(f"video {what} must be a number, not {value!r}")


@dataclasses.dataclass(frozen=True)
class RequestOptions:
    """One request's options, split out of the keyword arguments a caller wrote."""

    generation: GenerationOptions
    media: MediaOptions


def split_request(values: Mapping[str, Any], *, generation: GenerationOptions | None = None,
                  media: MediaOptions | None = None) -> RequestOptions:
    """Runner.chat(**values): sampling fields, media fields (video_fps=...), schema= and grammar=."""
    known = (*GenerationOptions.names(), "schema", *MediaOptions.names())
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(known)}")
    values = dict(values)
    schema = values.pop("schema", None)
    media_values = {k: values.pop(k) for k in list(values) if k in MediaOptions.names()}
    gen = GenerationOptions.build(values, base=generation, schema=schema)
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
