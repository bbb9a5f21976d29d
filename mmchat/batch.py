"""Batches in OpenAI's Batch format: requests in, one result line per request out (pure: no model).

Input is what OpenAI's Batch API and vLLM's `run-batch` take, one JSON object a line:
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {model, messages, ...}}``;
or a prompt and files, one request per file. Output is their result line: ``{"id", "custom_id",
"response": {"status_code": 200, "request_id", "body": <chat.completion>}, "error": null}``, or
``"response": null, "error": {"code", "message"}``. A bad line or a broken file fails only its
own line; only input that cannot be read at all (or duplicate custom_ids) stops the batch.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import errors
from . import messages as msgs
from .errors import InputError
from .inputs import part as part_location
from .inputs.part import Location
from .options import GenerationOptions
from .options.constraints import response_format_schema

#: body fields that are not sampling options but are fine to find in a request
_IGNORED = {"model", "stream", "stream_options", "user", "metadata", "store", "n", "logprobs"}
#: OpenAI's names for fields mmchat calls otherwise
_RENAMED = {"max_completion_tokens": "max_tokens", "repetition_penalty": "repeat_penalty"}


@dataclasses.dataclass
class Request:
    """One line of a batch: its messages and options, or why it cannot run."""

    index: int
    custom_id: str | None
    messages: msgs.Conversation = dataclasses.field(default_factory=msgs.Conversation)  # parsed once, when read
    options: GenerationOptions | None = None
    error: errors.MmchatError | None = None


def read_jsonl(lines: Iterable[str], base: GenerationOptions, source: str) -> list[Request]:
    """Requests from OpenAI Batch input lines; blank lines are skipped, a bad one fails alone."""
    requests: list[Request] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            requests.append(_line(len(requests), number, line, base))
    if not requests:
        raise InputError(f"{source} holds no requests: give one JSON object a line (OpenAI's Batch input format)")
    seen: dict[str, int] = {}
    for r in requests:
        if r.custom_id is not None and seen.setdefault(r.custom_id, r.index) != r.index:
            raise InputError(f"{source}: custom_id {r.custom_id!r} is given twice: each request needs its own")
    return requests


def _line(index: int, number: int, line: str, base: GenerationOptions) -> Request:
    where = f"line {number}"
    try:
        data = json.loads(line)
    except ValueError as e:
        return Request(index, None, error=InputError(f"{where} is not JSON ({e})"))
    if not isinstance(data, dict):
        return Request(index, None, error=InputError(f"{where} is not a JSON object"))
    custom_id = data.get("custom_id")
    request = Request(index, custom_id if isinstance(custom_id, str) else None)
    try:
        if request.custom_id is None:
            raise InputError(f"{where} has no custom_id (a string that names the request in the results)")
        url = data.get("url", "/v1/chat/completions")
        if url != "/v1/chat/completions" or data.get("method", "POST") != "POST":
            raise InputError(
                f"{where} asks for {data.get('method', 'POST')} {url}: only POST /v1/chat/completions is served"
            )
        body = data.get("body")
        if not isinstance(body, dict):
            raise InputError(f"{where} has no body object (the chat completion request)")
        request.messages = msgs.parse_conversation(body.get("messages"))
        request.options = body_options(body, base, where)
    except InputError as e:
        request.error = e
    return request


def body_options(body: Mapping[str, Any], base: GenerationOptions, where: str) -> GenerationOptions:
    """A request body's sampling fields over the command's options, checked by the same rules."""
    values: dict[str, Any] = {}
    schema = None
    for key, value in body.items():
        if key in ("messages", *_IGNORED):
            continue
        if key == "response_format":
            schema = response_format_schema(value, f"{where}: ")
            continue
        name = _RENAMED.get(key, key)
        if name not in GenerationOptions.names():
            raise InputError(f"{where}: unknown field {key!r} in body")
        values[name] = value
    if body.get("n", 1) != 1:
        raise InputError(f"{where}: n={body['n']!r}: one answer per request (n=1)")
    return GenerationOptions.build(values, base=base, schema=schema, label=lambda f: f"{where}: {f.name}=")


def file_requests(
    prompt: str, files: Sequence[str], base: GenerationOptions, *, system: str | None = None
) -> list[Request]:
    """One request per file, its kind told by its bytes (a broken file fails only its own line)."""
    out = []
    for index, name in enumerate(files):
        request = Request(index, name, options=base)
        try:
            where = part_location.locate(name)
            part = msgs.MediaPart(sniff_file(where), where)
            head = [msgs.system_message(system)] if system else []
            request.messages = msgs.parse_conversation([*head, msgs.user_turn(prompt, [part])])
        except InputError as e:
            request.error = e
        out.append(request)
    return out


def sniff_file(where: Location) -> msgs.PartKind:
    """Image, audio or video from the file's first bytes; a PDF or text file is a file part. What the
    bytes hold must agree with what the name claims (inputs/claims.py): a broken photo is an error."""
    from .inputs.claims import told

    if where.path is None or not where.path.exists():
        raise errors.SourceError(f"file not found: {where.label}")
    return told(where)  # a file it cannot read is read by the request, which says why in its own record


# -- results ---------------------------------------------------------------------------


def success(request: Request, completion: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": _id("batch_req"),
        "custom_id": request.custom_id,
        "response": {"status_code": 200, "request_id": _id("req"), "body": dict(completion)},
        "error": None,
    }


def failure(request: Request, error: BaseException) -> dict[str, Any]:
    return {
        "id": _id("batch_req"),
        "custom_id": request.custom_id,
        "response": None,
        "error": {"code": error_code(error), "message": errors.one_line(error).removeprefix("mmchat: error: ")},
    }


def error_code(error: BaseException) -> str:
    """MediaError -> media_error, ServerRefused -> server_refused; a plain InputError is invalid_request."""
    if type(error) is InputError:
        return "invalid_request"
    if not isinstance(error, errors.MmchatError):
        return "internal_error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def finished_lines(path: Path) -> dict[str, str]:
    """custom_id -> its successful line in an earlier run's output (--resume); failed lines and
    lines cut short by a kill are left out, so their requests run again."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path} to resume: {e}") from None
    done = {}
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("error") is None and isinstance(data.get("custom_id"), str):
            done[data["custom_id"]] = line
    return done


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"
