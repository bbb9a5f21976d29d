"""What stands between the network and the model: the key, the body limit, the access line, the bind check.

Plain ASGI middleware (no framework needed to read a header or count bytes), so a body over the
limit is refused from its Content-Length before a byte of it is read, and a chunked one as soon
as what came passes the limit; the access line is written once the response has been sent, with
the tokens the route left in the request's state, and never holds a body or a key.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ApiError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

access = logging.getLogger("mmchat.serve.access")
DEFAULT_MAX_BODY = 64 * 1024 * 1024  # bytes: a request with a few photos, a PDF and a minute of audio inline


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (a name is resolved, every address checked)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%", 1)[0]).is_loopback for info in infos)


def key_matches(given: str | None, key: str) -> bool:
    """The key compared in constant time (hmac.compare_digest), so its length and bytes are not timed out of it."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), key.encode("utf-8"))


def presented_key(headers: dict[str, str]) -> str | None:
    """OpenAI's clients send `Authorization: Bearer KEY`, Anthropic's `x-api-key: KEY`."""
    bearer = headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        return bearer[7:].strip()
    return headers.get("x-api-key")


def error_shape(path: str, error: ApiError) -> dict[str, Any]:
    """The error object of the API the path belongs to."""
    return error.anthropic() if path.startswith("/v1/messages") else error.openai()


async def send_error(scope: Scope, send: Send, error: ApiError) -> None:
    body = json.dumps(error_shape(scope.get("path", ""), error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a body over `limit` bytes: by its Content-Length before reading, or as it arrives."""

    def __init__(self, app: App, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = ApiError(413, f"the request body is over the server's limit of {self.limit} bytes (--max-body)")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await send_error(scope, send, too_large)
        seen, started = 0, False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large  # the app's handler answers it (or the except below, outside an app)
            return message

        async def watched(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except ApiError as e:
            if e is not too_large or started:
                raise
            await send_error(scope, send, too_large)


class Authorized:
    """401 without the key (when one is set); /health answers anyone, as a load balancer asks it."""

    def __init__(self, app: App, key: str | None):
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.key is None or scope.get("path") == "/health":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        if not key_matches(presented_key(headers), self.key):
            error = ApiError(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY'", "invalid_api_key")
            return await send_error(scope, send, error)
        return await self.app(scope, receive, send)


class AccessLog:
    """One line per request: client, method, path, status, tokens, seconds. Never a body, a query or a key."""

    def __init__(self, app: App):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 0
        state = scope.setdefault("state", {})

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            access.info(_line(scope, status, state, time.perf_counter() - t0))


def _line(scope: Scope, status: int, state: dict[str, Any], seconds: float) -> str:
    client = scope.get("client") or ("-", 0)
    tokens = state.get("tokens")
    counted = f" in={tokens[0]} cached={tokens[1]} out={tokens[2]}" if tokens else ""
    ended = " (client gone)" if state.get("cancelled") else ""
    return f'{client[0]} "{scope.get("method")} {scope.get("path")}" {status}{counted} {seconds:.3f}s{ended}'
