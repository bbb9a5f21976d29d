"""Anthropic's Messages API: a request body into mmchat's types, an answer into its JSON and events.

From docs.anthropic.com/en/api/messages and /en/docs/build-with-claude/streaming (and
anthropic-python's `types/message.py`, `raw_message_stream_event.py`): a request has `model`,
`max_tokens` (required), `messages` whose content is a string or blocks (text; image with a
base64 or url source; document with a base64 PDF, url or plain-text source), `system` (a string
or text blocks), `stop_sequences`, `temperature`, `top_p`, `top_k`, `stream`, `metadata`. An
answer is ``{"id": "msg_...", "type": "message", "role": "assistant", "model", "content":
[{"type": "text", "text"}], "stop_reason", "stop_sequence", "usage": {"input_tokens",
"output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}}``, where
input_tokens leaves out the tokens read from the cache. A stream is, in this order:
message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta (stop_reason, usage), message_stop; each as ``event: NAME`` + ``data: JSON``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from .. import messages as msgs
from ..errors import InputError
from ..options import GenerationOptions
from .errors import ApiError, unsupported
from .openai import ChatRequest

_UNSUPPORTED = {
    "tools": "the engine has no tool use yet; describe the tools in the prompt",
    "tool_choice": "the engine has no tool use yet",
    "mcp_servers": "the engine has no tool use",
    "container": "the engine runs no code",
}
#: fields that change nothing here (cache_control: every prefix is cached anyway; where and how fast it runs)
_IGNORED = (
    "metadata",
    "service_tier",
    "cache_control",
    "inference_geo",
    "speed",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
)
_READ = ("model", "messages", "system", "stream", "stop_sequences", "output_format", "output_config")
_SAMPLING = ("max_tokens", "temperature", "top_p", "top_k")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "interrupted": "end_turn"}


def parse(body: Any, base: GenerationOptions) -> ChatRequest:
    """A /v1/messages body; ApiError 400 naming what is wrong."""
    if not isinstance(body, Mapping):
        raise ApiError(400, "the request body must be a JSON object")
    for name, why in _UNSUPPORTED.items():
        if body.get(name) not in (None, [], {}):
            raise unsupported(name, why)
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled"):
        raise unsupported("thinking", "the engine has no extended thinking budget")
    unknown = sorted(set(body) - {*_UNSUPPORTED, *_IGNORED, *_READ, *_SAMPLING, "thinking"})
    if unknown:
        raise ApiError(400, f"{unknown[0]}: Extra inputs are not permitted", param=unknown[0])
    if "max_tokens" not in body:
        raise ApiError(400, "max_tokens: Field required", param="max_tokens")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream={stream!r} is not valid: give true or false", param="stream")
    values = {k: body[k] for k in _SAMPLING if k in body}
    if body.get("stop_sequences") is not None:
        values["stop"] = body["stop_sequences"]
    try:
        conversation = _system(body.get("system")) + [_message(m, i) for i, m in enumerate(_list(body))]
        messages = msgs.parse_conversation(conversation)
        label = lambda f: f"{_NAMES.get(f.name, f.name)}="  # noqa: E731
        options = GenerationOptions.build(values, base=base, label=label, schema=_schema(body))
    except InputError as e:
        raise ApiError(400, str(e)) from None
    model = body.get("model")
    return ChatRequest(model if isinstance(model, str) else None, messages, options, stream)


_NAMES = {"stop": "stop_sequences"}


def _schema(body: Mapping[str, Any]) -> Any:
    """Structured outputs: output_config.format (or the earlier output_format), {"type": "json_schema", "schema"}."""
    config = body.get("output_config") or {}
    if not isinstance(config, Mapping) or set(config) - {"format"}:
        raise unsupported("output_config", "mmchat serve takes only its format (a JSON schema)")
    shape = config.get("format") or body.get("output_format")
    if shape is None:
        return None
    if (
        not isinstance(shape, Mapping)
        or shape.get("type") != "json_schema"
        or not isinstance(shape.get("schema"), Mapping)
    ):
        raise ApiError(400, "output_format: give {'type': 'json_schema', 'schema': {...}}", param="output_format")
    return dict(shape["schema"])


def _list(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: give a list of at least one {'role', 'content'} message", param="messages")
    return messages


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [msgs.system_message(system)]
    if isinstance(system, list) and all(isinstance(b, Mapping) and b.get("type") == "text" for b in system):
        return [msgs.system_message("\n\n".join(str(b.get("text", "")) for b in system))]
    raise ApiError(400, "system: give a string or a list of text blocks", param="system")


def _message(message: Any, i: int) -> dict[str, Any]:
    where = f"messages.{i}"
    if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
        raise ApiError(400, f"{where}: a message is {{'role': 'user' | 'assistant', 'content': ...}}")
    content = message.get("content")
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    if not isinstance(content, list):
        raise ApiError(400, f"{where}.content: give a string or a list of content blocks")
    return {"role": message["role"], "content": [_block(b, f"{where}.content.{j}") for j, b in enumerate(content)]}


def _block(block: Any, where: str) -> dict[str, Any]:
    """One content block as an OpenAI part (the resolver reads images and PDFs by their bytes)."""
    kind = block.get("type") if isinstance(block, Mapping) else None
    if kind == "text" and isinstance(block.get("text"), str):
        return msgs.text_part(block["text"])
    if kind in ("tool_use", "tool_result", "server_tool_use"):
        raise unsupported("tools", f"{where} is a {kind} block, which needs tool use")
    if kind in ("image", "document"):
        source = block.get("source")
        if isinstance(source, Mapping) and source.get("type") == "base64" and isinstance(source.get("data"), str):
            mime = source.get("media_type") or "application/octet-stream"
            return msgs.image_part(f"data:{mime};base64,{source['data']}")
        if isinstance(source, Mapping) and source.get("type") == "url" and isinstance(source.get("url"), str):
            return msgs.image_part(source["url"])
        if kind == "document" and isinstance(source, Mapping) and source.get("type") == "text":
            return msgs.text_part(str(source.get("data", "")))
        raise ApiError(
            400, f"{where}.source: give {{'type': 'base64', 'media_type', 'data'}} or {{'type': 'url', 'url'}}"
        )
    raise ApiError(400, f"{where}: unknown content block type {kind!r}; mmchat takes text, image and document")


# -- answers ----------------------------------------------------------------------------


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def usage(completion: Any) -> dict[str, int]:
    u = completion.usage
    return {
        "input_tokens": u.prompt_tokens - u.cached_tokens,
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def message_body(completion: Any, model: str) -> dict[str, Any]:
    return {
        **message_body_shell(message_id(), model),
        "content": [{"type": "text", "text": completion.content}],
        "stop_reason": _STOP_REASONS.get(completion.finish_reason, "end_turn"),
        "usage": usage(completion),
    }


def event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"


class Events:
    """The events of one streamed answer, in Anthropic's order."""

    def __init__(self, model: str):
        self.id, self.model = message_id(), model

    def start(self) -> str:
        """message_start (the prompt is not counted yet: message_delta's usage says it), the text block, a ping."""
        empty = {"input_tokens": 0, "output_tokens": 0}
        message = {**message_body_shell(self.id, self.model), "usage": empty}
        return (
            event("message_start", {"message": message})
            + event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            + event("ping", {})
        )

    def delta(self, text: str) -> str:
        return event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})

    def end(self, completion: Any) -> str:
        reason = _STOP_REASONS.get(completion.finish_reason, "end_turn")
        return (
            event("content_block_stop", {"index": 0})
            + event(
                "message_delta", {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage(completion)}
            )
            + event("message_stop", {})
        )

    def error(self, error: ApiError) -> str:
        return event("error", {"error": error.anthropic()["error"]})


def message_body_shell(mid: str, model: str) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
