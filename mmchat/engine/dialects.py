"""What each OpenAI-compatible server takes, in its own words: sampler fields, their "off" values, constraints.

Servers drop a field they do not know without a word (vLLM's request model has extra="allow" and
only logs it; SGLang's and llama-cpp-python's pydantic models ignore it), and a sampler left out
is not "off": vLLM and SGLang then take the model's generation_config (Qwen ships top_k 20,
min_p 0.1, repetition_penalty 1.05), llama-cpp-python its own defaults (top_k 40, min_p 0.05,
repeat_penalty 1.1). So every value is sent under the name the server reads, "off" included, and
what a server has no field for is named once by the engine (`unsent`). Written from each
server's request model:

- llama-server: vendor/llama.cpp/tools/server/server-schema.cpp (llama-cpp-python 0.3.36's
  sdist) reads top_k (0 = disabled), min_p, repeat_penalty, repeat_last_n, ignore_eos and
  grammar; server-common.cpp turns response_format (json_schema or json_object) into its
  json_schema. /v1/models says owned_by "llamacpp" (server-context.cpp).
- llama-cpp-python's server: llama_cpp/server/types.py CreateChatCompletionRequest has top_k,
  min_p, repeat_penalty and grammar, no repeat_last_n, ignore_eos or stream_options; its
  response_format (llama_types.ChatCompletionRequestResponseFormat) is "text" or
  "json_object" with a "schema". owned_by "me" (server/app.py get_models).
- vLLM: vllm/entrypoints/openai/chat_completion/protocol.py ChatCompletionRequest: top_k,
  min_p, repetition_penalty (None: generation_config), ignore_eos, structured_outputs
  {"grammar": ...}, response_format json_schema; SamplingParams: top_k -1 (or 0) is off.
  owned_by "vllm" (ModelCard).
- SGLang: python/sglang/srt/entrypoints/openai/protocol.py ChatCompletionRequest: the same
  None rule (to_sampling_params), top_k -1 is off and 0 refused ("top_k must be -1 (disable),
  or at least 1"), ebnf, ignore_eos, response_format json_schema whose json_schema needs a
  name. owned_by "sglang" (ModelCard).
- OpenAI: openai-python's CompletionCreateParamsBase: no top_k, min_p, repeat penalty,
  ignore_eos or grammar, and the API refuses a field it does not know (HTTP 400
  "Unrecognized request argument supplied: top_k").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InputError

if TYPE_CHECKING:
    from ..options import GenerationOptions

#: how a server takes audio: OpenAI's `input_audio` (llama-server, vLLM) or an `audio_url` (SGLang)
AudioDialect = Literal["input_audio", "audio_url"]


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's response_format for a schema; `name` is required by SGLang and OpenAI (a-z, 0-9, _ and -)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "")).strip("_")[:64] or "answer"
    return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}}


def json_object_format(schema: dict[str, Any]) -> dict[str, Any]:
    """llama-cpp-python's form: its response_format knows only "text" and "json_object" (with a schema)."""
    return {"response_format": {"type": "json_object", "schema": schema}}


@dataclasses.dataclass(frozen=True)
class Dialect:
    """One server's names for what mmchat sends."""

    kind: str  # as --server-kind names it
    name: str  # as a message names it
    audio: AudioDialect = "input_audio"
    stream_usage: bool = True  # takes stream_options.include_usage
    top_k_off: int | None = None  # the top_k that means "off"; None: no top_k at all
    min_p: bool = False
    repeat_penalty: str | None = None  # the repeat penalty's field name
    repeat_last_n: bool = False
    ignore_eos: bool = False
    grammar: Callable[[str], dict[str, Any]] | None = None  # a GBNF grammar as request fields
    schema: Callable[[dict[str, Any]], dict[str, Any]] = json_schema_format


DIALECTS: dict[str, Dialect] = {
    d.kind: d
    for d in (
        Dialect(
            "llama-server",
            "llama-server",
            top_k_off=0,
            min_p=True,
            repeat_penalty="repeat_penalty",
            repeat_last_n=True,
            ignore_eos=True,
            grammar=lambda g: {"grammar": g},
        ),
        Dialect(
            "llama-cpp-python",
            "llama-cpp-python's server",
            stream_usage=False,
            top_k_off=0,
            min_p=True,
            repeat_penalty="repeat_penalty",
            grammar=lambda g: {"grammar": g},
            schema=json_object_format,
        ),
        Dialect(
            "vllm",
            "vLLM",
            top_k_off=-1,
            min_p=True,
            repeat_penalty="repetition_penalty",
            ignore_eos=True,
            grammar=lambda g: {"structured_outputs": {"grammar": g}},
        ),
        Dialect(
            "sglang",
            "SGLang",
            audio="audio_url",
            top_k_off=-1,
            min_p=True,
            repeat_penalty="repetition_penalty",
            ignore_eos=True,
            grammar=lambda g: {"ebnf": g},
        ),
        Dialect("openai", "a plain OpenAI API"),
    )
}
#: what /v1/models' owned_by says about the server behind it
#: (mmchat serve reads llama-server's names for every option: mmchat/serve/openai.py, GenerationOptions)
_OWNERS = {
    "llamacpp": "llama-server",
    "me": "llama-cpp-python",
    "vllm": "vllm",
    "sglang": "sglang",
    "mmchat": "llama-server",
}


def identify(owned_by: Any, props: dict[str, Any]) -> Dialect:
    """The dialect from /v1/models' owned_by, or from llama-server's /props; plain OpenAI otherwise."""
    kind = _OWNERS.get(str(owned_by or "").lower())
    if kind is None and isinstance(props.get("default_generation_settings"), dict):
        kind = "llama-server"
    return DIALECTS[kind or "openai"]


def sampler_fields(options: GenerationOptions, dialect: Dialect) -> dict[str, Any]:
    """The samplers the server has, each under its name and with its "off"."""
    out: dict[str, Any] = {}
    if dialect.top_k_off is not None:
        out["top_k"] = options.top_k if options.top_k > 0 else dialect.top_k_off
    if dialect.min_p:
        out["min_p"] = options.min_p
    if dialect.repeat_penalty:
        out[dialect.repeat_penalty] = options.repeat_penalty
    if dialect.repeat_last_n:
        out["repeat_last_n"] = options.repeat_last_n
    if dialect.ignore_eos:
        out["ignore_eos"] = options.ignore_eos
    return out


def unsent(options: GenerationOptions, dialect: Dialect) -> list[str]:
    """Options in force that the server has no field for (the engine warns of them once)."""
    lacking = {
        "--top-k": dialect.top_k_off is None and options.top_k > 0,
        "--min-p": not dialect.min_p and options.min_p > 0,
        "--repeat-penalty": not dialect.repeat_penalty and options.repeat_penalty != 1.0,
        "repeat_last_n": bool(dialect.repeat_penalty) and not dialect.repeat_last_n and options.repeat_penalty != 1.0,
        "--ignore-eos": not dialect.ignore_eos and options.ignore_eos,
    }
    return [name for name, missing in lacking.items() if missing]


def constraint_fields(options: GenerationOptions, dialect: Dialect, where: str) -> dict[str, Any]:
    """--schema or --grammar as the server takes it; a grammar it cannot take is refused here, unsent."""
    if options.schema is not None:
        return dialect.schema(options.schema)
    if not options.grammar:
        return {}
    if dialect.grammar is None:
        raise InputError(
            f"the server at {where} ({dialect.name}) takes no GBNF grammar: give the answer's shape as a JSON "
            "schema (--schema), or use llama-server, vLLM or SGLang (behind a proxy: say which with --server-kind)"
        )
    return dialect.grammar(options.grammar)
