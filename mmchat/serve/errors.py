"""Failures as each API's error object, with the status its clients act on.

OpenAI (platform.openai.com/docs/guides/error-codes, openai-python's `_make_status_error`):
``{"error": {"message", "type", "param", "code"}}``; the SDK raises BadRequestError for 400,
AuthenticationError 401, NotFoundError 404, InternalServerError for 5xx. Anthropic
(docs.anthropic.com/en/api/errors): ``{"type": "error", "error": {"type", "message"}}`` with
invalid_request_error 400, authentication_error 401, not_found_error 404,
request_too_large 413, api_error 500, overloaded_error (Anthropic sends 529; a queue that is
full here is 503, which both SDKs retry after Retry-After).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from .. import errors

#: status -> (OpenAI type, Anthropic type)
_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    404: ("invalid_request_error", "not_found_error"),
    405: ("invalid_request_error", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large"),
    500: ("server_error", "api_error"),
    503: ("server_error", "overloaded_error"),
}


@dataclasses.dataclass
class ApiError(Exception):
    """A request that fails: its status, one line saying why, and OpenAI's code and param."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def openai(self) -> dict[str, Any]:
        kind = _TYPES.get(self.status, _TYPES[500])[0]
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def anthropic(self) -> dict[str, Any]:
        kind = _TYPES.get(self.status, _TYPES[500])[1]
        return {"type": "error", "error": {"type": kind, "message": self.message}}


def from_exception(error: BaseException) -> ApiError:
    """mmchat's own errors: bad input (a part, an option, media the policy refuses) is 400; the rest 500."""
    if isinstance(error, ApiError):
        return error
    message = errors.one_line(error).removeprefix("mmchat: error: ")
    if isinstance(error, errors.InputError):
        from ..batch import error_code

        return ApiError(400, message, code=error_code(error))
    if isinstance(error, errors.MmchatError):
        return ApiError(500, message, code="model_error")
    logging.getLogger("mmchat.serve").error("a request failed", exc_info=error)  # the log it points to
    return ApiError(500, "the server failed while answering: see its log", code="internal_error")


def unsupported(name: str, why: str) -> ApiError:
    """An option the engine cannot honour: refused by name, never dropped."""
    return ApiError(400, f"{name} is not supported by mmchat serve: {why}", code="unsupported_parameter", param=name)
