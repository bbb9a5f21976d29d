"""What real OpenAI-compatible servers do with a chat request, for tests/support/stubserver.py.

Each `Server` is copied from the server's own sources, never from mmchat's: the owned_by its
/v1/models gives, the fields its chat request model reads (anything else it drops in silence,
except OpenAI, which refuses it) and the values it refuses, with the status it answers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

Refusal = tuple[int, str] | None


@dataclasses.dataclass(frozen=True)
class Server:
    owned_by: str
    fields: frozenset[str]
    refuse: Callable[[dict[str, Any]], Refusal]
    props: dict[str, Any] | None = None  # /props; None: 404


def _fields(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _named_json_schema(body: dict[str, Any]) -> Refusal:
    """vLLM's, SGLang's and OpenAI's JsonSchemaResponseFormat: `name: str` is required."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema" and "name" not in (fmt.get("json_schema") or {}):
        return 400, "response_format.json_schema.name: Field required"
    return None


# llama-server: vendor/llama.cpp/tools/server in llama-cpp-python 0.3.36's sdist. server-schema.cpp's
# fields (and aliases: max_tokens, max_completion_tokens, n, logprobs, grammar) and the keys
# server-common.cpp's oaicompat_chat_params_parse reads. owned_by "llamacpp" (server-context.cpp);
# /props gives modalities and default_generation_settings.n_ctx.
LLAMA_SERVER_FIELDS = _fields("""
    messages model verbose timings_per_token stream stream_options cache_prompt return_tokens return_progress
    sse_ping_interval n_predict max_tokens max_completion_tokens n_indent n_keep n_discard n_cmpl n
    n_cache_reuse t_max_predict_ms response_fields top_k top_p min_p top_n_sigma xtc_probability xtc_threshold
    typical_p temperature dynatemp_range dynatemp_exponent repeat_last_n repeat_penalty frequency_penalty
    presence_penalty dry_multiplier dry_base dry_allowed_length dry_penalty_last_n dry_sequence_breakers mirostat
    mirostat_tau mirostat_eta seed n_probs logprobs top_logprobs min_keep post_sampling_probs lora json_schema
    grammar grammar_lazy response_format logit_bias ignore_eos stop samplers tools tool_choice
    parallel_tool_calls chat_template_kwargs add_generation_prompt reasoning_format reasoning_effort echo
    continue_final_message
""")


def _llama_server_refuses(body: dict[str, Any]) -> Refusal:
    kind = (body.get("response_format") or {}).get("type", "")
    if kind not in ("", "text", "json_object", "json_schema"):  # server-common.cpp
        return 400, f'response_format type must be one of "text" or "json_object", but got: {kind}'
    if body.get("json_schema") is not None and body.get("grammar"):
        return 400, "Cannot use both json_schema and grammar"
    return None


# llama-cpp-python's server: llama_cpp/server/types.py CreateChatCompletionRequest (pydantic,
# unknown fields ignored; FastAPI answers 422 to a value its types refuse). response_format is
# llama_types.ChatCompletionRequestResponseFormat: type "text" or "json_object", and a schema.
# top_k ge=0, min_p 0..1. owned_by "me" (server/app.py get_models); no /props.
LLAMA_CPP_PYTHON_FIELDS = _fields("""
    model messages functions function_call tools tool_choice max_tokens min_tokens logprobs top_logprobs
    temperature top_p min_p stop stream presence_penalty frequency_penalty logit_bias seed response_format n
    user top_k repeat_penalty logit_bias_type mirostat_mode mirostat_tau mirostat_eta grammar
""")


def _llama_cpp_python_refuses(body: dict[str, Any]) -> Refusal:
    kind = (body.get("response_format") or {}).get("type")
    if kind not in (None, "text", "json_object"):
        return 422, f"response_format.type: Input should be 'text' or 'json_object', got {kind!r}"
    if body.get("top_k", 0) < 0:
        return 422, "top_k: Input should be greater than or equal to 0"
    return None


# vLLM: vllm/entrypoints/openai/chat_completion/protocol.py ChatCompletionRequest (OpenAIBaseModel,
# extra="allow": unknown fields are only logged). vllm/sampling_params.py refuses top_k below -1
# ("quietly accept -1 as disabled, but prefer 0"). owned_by "vllm" in its ModelCard; no /props.
VLLM_FIELDS = _fields("""
    messages model frequency_penalty logit_bias logprobs top_logprobs max_tokens max_completion_tokens n
    presence_penalty response_format seed stop stream stream_options temperature top_p tools tool_choice
    reasoning_effort include_reasoning parallel_tool_calls user use_beam_search top_k min_p repetition_penalty
    length_penalty stop_token_ids include_stop_str_in_output ignore_eos min_tokens skip_special_tokens
    spaces_between_special_tokens truncate_prompt_tokens prompt_logprobs allowed_token_ids bad_words echo
    add_generation_prompt continue_final_message add_special_tokens documents chat_template chat_template_kwargs
    mm_processor_kwargs structured_outputs priority request_id logits_processors return_tokens_as_token_ids
    return_token_ids cache_salt kv_transfer_params vllm_xargs max_repetition_pattern_size
    min_repetition_pattern_size repetition_min_count
""")


def _vllm_refuses(body: dict[str, Any]) -> Refusal:
    if body.get("top_k") is not None and body["top_k"] < -1:
        return 400, f"top_k must be 0 (disable), or at least 1, got {body['top_k']}."
    return _named_json_schema(body)


# SGLang: python/sglang/srt/entrypoints/openai/protocol.py ChatCompletionRequest (pydantic BaseModel:
# unknown fields ignored); its SamplingParams.verify refuses top_k 0 ("must be -1 (disable), or at
# least 1"). owned_by "sglang" in its ModelCard; no /props.
SGLANG_FIELDS = _fields("""
    messages model frequency_penalty logit_bias logprobs top_logprobs max_tokens max_completion_tokens n
    presence_penalty response_format seed stop stream stream_options temperature top_p user tools tool_choice
    parallel_tool_calls return_hidden_states return_routed_experts routed_experts_start_len
    return_cached_tokens_details return_prompt_token_ids return_token_ids return_meta_info reasoning_effort task
    top_k min_p min_tokens regex ebnf repetition_penalty stop_token_ids stop_regex no_stop_trim ignore_eos
    continue_final_message skip_special_tokens lora_path session_id session_params separate_reasoning
    stream_reasoning chat_template_kwargs max_dynamic_patch min_dynamic_patch use_audio_in_video images_config
    custom_logit_processor custom_params input_ids rid extra_key cache_salt ngram_corpus_id priority
    bootstrap_host bootstrap_port bootstrap_room routed_dp_rank disagg_prefill_dp_rank data_parallel_rank
""")


def _sglang_refuses(body: dict[str, Any]) -> Refusal:
    top_k = body.get("top_k")
    if top_k is not None and (top_k == 0 or top_k < -1):
        return 400, f"top_k must be -1 (disable), or at least 1, got {top_k}."
    return _named_json_schema(body)


# OpenAI: openai-python's src/openai/types/chat/completion_create_params.py CompletionCreateParamsBase.
# The API refuses any other field: HTTP 400 "Unrecognized request argument supplied: top_k"
# (as reported in github.com/xlinx/sd-webui-decadetw-auto-prompt-llm/issues/29). A json_schema's name
# is ^[a-zA-Z0-9_-]{1,64}$ (shared_params/response_format_json_schema.py). /v1/models: owned_by "openai".
OPENAI_FIELDS = _fields("""
    messages model audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens
    max_tokens metadata modalities n parallel_tool_calls prediction presence_penalty reasoning_effort
    response_format seed service_tier stop store stream stream_options temperature tool_choice tools
    top_logprobs top_p user web_search_options
""")


def _openai_refuses(body: dict[str, Any]) -> Refusal:
    unknown = sorted(set(body) - OPENAI_FIELDS)
    if unknown:
        return 400, f"Unrecognized request argument supplied: {unknown[0]}"
    named = _named_json_schema(body)
    name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "x")
    if named is None and not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        return 400, f"Invalid 'response_format.json_schema.name': string does not match pattern. Got {name!r}"
    return named


SERVERS = {
    "llama-server": Server(
        "llamacpp",
        LLAMA_SERVER_FIELDS,
        _llama_server_refuses,
        props={"modalities": {"vision": True, "audio": False}, "default_generation_settings": {"n_ctx": 8192}},
    ),
    "llama-cpp-python": Server("me", LLAMA_CPP_PYTHON_FIELDS, _llama_cpp_python_refuses),
    "vllm": Server("vllm", VLLM_FIELDS, _vllm_refuses),
    "sglang": Server("sglang", SGLANG_FIELDS, _sglang_refuses),
    "openai": Server("openai", OPENAI_FIELDS, _openai_refuses),
}
