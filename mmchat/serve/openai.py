"""OpenAI's Chat Completions API: a request body into mmchat's types, an answer into its JSON.

Shapes from platform.openai.com/docs/api-reference/chat (and openai-python's
`types/chat/chat_completion*.py`, which the SDK parses them into): a completion is
``{"id", "object": "chat.completion", "created", "model", "choices": [{"index", "message":
{"role", "content", "refusal"}, "logprobs", "finish_reason"}], "usage"}``; a stream is
``data: <chat.completion.chunk>`` lines, the first delta carrying the role, the last choice its
finish_reason, then (with ``stream_options.include_usage``) one chunk with ``"choices": []`` and
the usage, every chunk before it ``"usage": null``, and ``data: [DONE]``.

Fields are checked by the rules `mmchat batch` applies to a request line (batch.body_options:
the CLI's own option rules); what the engine cannot honour is refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .. import messages as msgs
from ..batch import body_options
from ..errors import InputError
from ..options import GenerationOptions
from .errors import ApiError, unsupported

#: fields the engine cannot honour, and why (refused when given a value that asks for them)
_UNSUPPORTED = {
    "tools": "the engine has no tool calling yet; describe the tools in the prompt",
    "tool_choice": "the engine has no tool calling yet",
    "functions": "the engine has no function calling",
    "function_call": "the engine has no function calling",
    "parallel_tool_calls": "the engine has no tool calling yet",
    "logprobs": "the engine does not return log probabilities",
    "top_logprobs": "the engine does not return log probabilities",
    "logit_bias": "the engine has no logit bias",
    "audio": "the engine answers in text only",
    "prediction": "the engine has no predicted outputs",
}
_SERVED = ("stream", "stream_options", "model")


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """One request in mmchat's types: the conversation checked, the options built."""

    model: str | None
    messages: msgs.Conversation  # parsed once: the Runner takes it as it is
    options: GenerationOptions
    stream: bool = False
    include_usage: bool = False


def parse(body: Any, base: GenerationOptions) -> ChatRequest:
    """A /v1/chat/completions body; ApiError 400 naming what is wrong."""
    if not isinstance(body, Mapping):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_request_body")
    for name, why in _UNSUPPORTED.items():
        if body.get(name) not in (None, False, [], {}):
            raise unsupported(name, why)
    if body.get("modalities") not in (None, ["text"]):
        raise unsupported("modalities", "the engine answers in text only")
    if body.get("n", 1) != 1:
        raise unsupported("n", f"n={body['n']!r} asks for several answers; mmchat gives one per request (n=1)")
    rest = {k: v for k, v in body.items() if k not in (*_UNSUPPORTED, "modalities", "messages", *_SERVED)}
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream={stream!r} is not valid: give true or false", param="stream")
    usage = (body.get("stream_options") or {}).get("include_usage", False)
    try:
        messages = msgs.parse_conversation(openai_messages(body.get("messages")))
        options = body_options(rest, base, "request")
    except InputError as e:
        raise ApiError(400, str(e), code="invalid_request") from None
    model = body.get("model")
    return ChatRequest(model if isinstance(model, str) else None, messages, options, stream, bool(usage))


def openai_messages(messages: Any) -> Any:
    """OpenAI's message forms that mmchat's validator does not take, in its terms: the `developer`
    role is the system's; a PDF as a `file` part (file_data, a data: URL) is read as `-i` reads one."""
    if not isinstance(messages, list):
        return messages
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            out.append(message)
            continue
        message = dict(message)
        if message.get("role") in ("tool", "function") or message.get("tool_calls"):
            raise unsupported("tools", f"messages[{i}] holds a tool call or its result, which needs tool calling")
        if message.get("role") == "developer":
            message["role"] = "system"
        if isinstance(message.get("content"), list):
            message["content"] = [_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(message["content"])]
        out.append(message)
    return out


def _part(part: Any, where: str) -> Any:
    if not isinstance(part, Mapping) or part.get("type") != "file":
        return part
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, Mapping) else None
    if not isinstance(data, str) or not data.startswith("data:"):
        raise ApiError(
            400,
            f"{where}: a file part needs file.file_data as a data: URL (data:application/pdf;base64,...); "
            "mmchat serve has no Files API for file_id",
            param=where,
        )
    return msgs.image_part(data)  # the resolver knows a PDF by its bytes and reads its pages and text


# -- answers ----------------------------------------------------------------------------


def usage(completion: Any) -> dict[str, Any]:
    u = completion.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {  # OpenAI's two, then mmchat's
            "cached_tokens": u.cached_tokens,
            "audio_tokens": u.audio_tokens,
            "image_tokens": u.image_tokens,
            "encoded_media": u.encoded_media,
        },
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_body(completion: Any, model: str) -> dict[str, Any]:
    """The whole answer as OpenAI's chat.completion (plus mmchat's timings, which clients ignore)."""
    body = completion.to_dict()
    body["model"] = model
    body["system_fingerprint"] = None
    for choice in body["choices"]:
        choice["message"]["refusal"] = None
        choice["logprobs"] = None
    body["usage"] = usage(completion)
    return body


class Chunks:
    """The chunks of one streamed answer, as `data:` lines."""

    def __init__(self, model: str, include_usage: bool):
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), model
        self.include_usage = include_usage

    def _line(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        chunk.update(extra)
        return f"data: {json.dumps(chunk)}\n\n"

    def start(self) -> str:
        """The first chunk: the role."""
        return self._line([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])

    def delta(self, text: str) -> str:
        return self._line([{"index": 0, "delta": {"content": text}, "finish_reason": None}])

    def end(self, completion: Any) -> str:
        """The finish reason, the usage chunk when asked for, and [DONE]."""
        out = self._line([{"index": 0, "delta": {}, "finish_reason": completion.finish_reason}])
        if self.include_usage:
            out += self._line([], usage=usage(completion))
        return out + "data: [DONE]\n\n"

    def error(self, error: ApiError) -> str:
        """A failure after the answer began (its status is sent already): the error object as a chunk."""
        return f"data: {json.dumps(error.openai())}\n\n"
