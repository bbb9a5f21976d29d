"""`ChatCompletionRequest`: one request in mistral.rs's (and OpenAI's) field names, sent through `Runner`.

    runner.send_chat_completion_request(ChatCompletionRequest(model="default", messages=[...], max_tokens=256))

The fields become the keyword options of `Runner.stream`, so they are checked by the same rules
as `--top-p` and `Runner.chat(top_p=...)` (options.py); `response_format` with a JSON schema, or
`grammar_type="json_schema"`, constrains the answer as `--schema` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .messages import parse_conversation
from .options.constraints import response_format_schema
from .results import ChatCompletion, ChatCompletionChunk

if TYPE_CHECKING:
    from .runner import Runner


@dataclasses.dataclass
class ChatCompletionRequest:
    """A chat request. `model` is not used for routing: a Runner holds one model."""

    messages: Sequence[Any]  # OpenAI's message dicts, or a Conversation (mmchat.messages.parse_conversation)
    model: str = "default"
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None  # OpenAI's name
    stop_seqs: list[str] | None = None  # mistral.rs's name
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    grammar: str | None = None
    grammar_type: str | None = None  # "json_schema" (grammar is a schema) or "gbnf"/None (llama.cpp's grammar)
    stream: bool = False
    n_choices: int = 1


_SAME_NAME = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "frequency_penalty", "presence_penalty")


def options(request: ChatCompletionRequest) -> dict[str, Any]:
    """The request's fields as `Runner.stream` keywords (None: the runner's default)."""
    if request.n_choices != 1:
        raise InputError(f"n_choices={request.n_choices!r}: mmchat answers one choice per request; give 1")
    if request.stop is not None and request.stop_seqs is not None:
        raise InputError("stop= and stop_seqs= are the same field: give one of them")
    values = {name: getattr(request, name) for name in _SAME_NAME}
    values["stop"] = request.stop if request.stop is not None else request.stop_seqs
    values["repeat_penalty"] = request.repetition_penalty
    values["schema"], values["grammar"] = _constraint(request)
    return {k: v for k, v in values.items() if v is not None}


def _constraint(request: ChatCompletionRequest) -> tuple[Any, str | None]:
    """(JSON schema, GBNF grammar) from response_format, or grammar + grammar_type."""
    schema = response_format_schema(request.response_format)
    kind = (request.grammar_type or "gbnf").lower()
    if request.grammar is None:
        return schema, None
    if kind == "json_schema":
        if schema is not None:
            raise InputError("response_format and grammar_type='json_schema' both give a schema: give one of them")
        return request.grammar, None
    if kind != "gbnf":
        raise InputError(
            f"grammar_type={request.grammar_type!r} is not one mmchat runs: llama.cpp takes a GBNF grammar "
            "(grammar_type='gbnf') or a JSON schema (grammar_type='json_schema', or response_format)"
        )
    return schema, request.grammar


def send(runner: Runner, request: ChatCompletionRequest) -> ChatCompletion | Iterator[ChatCompletionChunk]:
    """The completion, or (stream=True) an iterator of chunks whose last one carries the usage."""
    if not isinstance(request, ChatCompletionRequest):
        raise InputError(f"send_chat_completion_request takes a ChatCompletionRequest, not {type(request).__name__}")
    kwargs, messages = options(request), parse_conversation(request.messages)  # once: the Runner takes it as it is
    if request.stream:
        return runner.stream(messages, **kwargs).chunks()
    return runner.chat(messages, **kwargs)
