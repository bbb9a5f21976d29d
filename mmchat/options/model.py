"""How a model is loaded here, or which server answers instead."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .. import config
from ..values import Rule, parse_size
from ..values import is_bool as _is_bool
from ..values import number as _number
from ..values import whole as _whole
from .fields import Label, _Options, option, python_label


@dataclasses.dataclass(frozen=True)
class LoadOptions(_Options):
    """How the model is loaded: fixed for the life of an engine."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "cache_size", parse_size(self.cache_size))
        object.__setattr__(self, "kv_cache_size", parse_size(self.kv_cache_size))

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
    draft: int = option(
        config.DEFAULT_DRAFT,
        Rule("a whole number from 0 to 64 (0 is off)", lambda v: _whole(0)(v) and v <= 64),
        "Draft up to this many tokens of a greedy answer from the prompt and check them in one batch "
        "(prompt lookup: faster when the answer repeats the prompt; 0 = off).",
        flags=("--draft",),
        type=int,
    )
    draft_min: int = option(
        config.DEFAULT_DRAFT_MIN,
        Rule("a whole number from 1 to 8", lambda v: _whole(1)(v) and v <= 8),
        "Tokens of the answer's end that must match the prompt before what followed there is drafted.",
        flags=("--draft-min",),
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
        "Keep encoded media and conversations' KV states on disk, so a later run never encodes them "
        "or evaluates a continued conversation again (`mmchat cache`).",
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
    kv_cache_size: int = option(
        config.DEFAULT_KV_STATE_CACHE_BYTES,
        Rule('a size in bytes, or with K, M or G ("2G")', lambda v: parse_size(v) is not None),
        "Most disk saved KV states may use (e.g. 500M); the least recently used go first. [default: 2G]",
        flags=("--kv-cache-size",),
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
