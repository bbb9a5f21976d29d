"""The ASGI app: thin routes that parse a request into mmchat's types, queue it, and shape the answer.

    POST /v1/chat/completions   OpenAI's Chat Completions (streamed as server-sent events, or not)
    POST /v1/messages           Anthropic's Messages
    GET  /v1/models             the loaded model (OpenAI's list; Anthropic's when it sends anthropic-version)
    GET  /health                ok, or 503 while draining (no key needed)

Every failure is the API's error object (serve/errors.py) with its status; nothing reaches a
client as a traceback. A streamed request waits for its first token before the 200 goes out,
so a part that cannot be read, a refused URL or a prompt too long for the context is a 400 like
the unstreamed one, never an error inside a 200 stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import messages as msgs
from ..engine.base import Capabilities
from ..options import GenerationOptions
from . import anthropic, openai
from .errors import ApiError, from_exception
from .guard import DEFAULT_MAX_BODY, AccessLog, Authorized, BodyLimit, error_shape
from .queue import Done, Failed, Job, Worker

log = logging.getLogger("mmchat.serve")


@dataclasses.dataclass(frozen=True)
class Served:
    """What the server answers with: the model's id (and other names requests may use for it), what it
    takes, the sampling defaults a request starts from, the key, the body limit."""

    model_id: str
    capabilities: Capabilities
    generation: GenerationOptions = dataclasses.field(default_factory=GenerationOptions)
    aliases: frozenset[str] = frozenset()
    api_key: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    system: str | None = None  # serve --system: for requests that bring none
    created: int = dataclasses.field(default_factory=lambda: int(time.time()))

    def conversation(self, messages: msgs.Conversation) -> msgs.Conversation:
        """The request's conversation, after the served system prompt unless it brings its own."""
        if self.system and not (messages and messages[0].role == "system"):
            return msgs.parse_conversation([msgs.system_message(self.system), *messages])  # the rest as it is
        return messages

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_id and name not in self.aliases:
            raise ApiError(
                404,
                f"the model `{name}` is not served here: this server answers as `{self.model_id}` (GET /v1/models)",
                code="model_not_found",
                param="model",
            )

    @property
    def modalities(self) -> list[str]:
        return ["text", *self.capabilities.kinds]


def build_app(worker: Worker, served: Served) -> Any:
    """The whole server, middleware included: access line outermost, then the key, then the body limit."""
    routes = _Routes(worker, served)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/messages", routes.messages, methods=["POST"]),
            Route("/v1/models", routes.models, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    return AccessLog(Authorized(BodyLimit(app, served.max_body), served.api_key))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_shape(request.url.path, exc), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    what = "no such endpoint" if exc.status_code == 404 else f"{request.method} is not served here"
    error = ApiError(exc.status_code, f"{request.method} {request.url.path}: {what}", code="not_found")
    return await _api_error(request, error)


def _guarded(route: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Any failure becomes the API's error object; an unexpected one is logged here, once."""

    @functools.wraps(route)
    async def wrapper(self: _Routes, request: Request) -> Response:
        try:
            return await route(self, request)
        except ApiError:
            raise
        except Exception as e:  # noqa: BLE001
            error = from_exception(e)
            if error.status >= 500:
                log.error("%s %s failed: %s", request.method, request.url.path, e, exc_info=log.isEnabledFor(10))
            raise error from None

    return wrapper


class _Routes:
    def __init__(self, worker: Worker, served: Served):
        self.worker, self.served = worker, served

    @_guarded
    async def chat_completions(self, request: Request) -> Response:
        call = openai.parse(await _json(request), self.served.generation)
        stream = openai.Chunks(self.served.model_id, call.include_usage) if call.stream else None
        return await self._respond(request, call, stream, openai.completion_body)

    @_guarded
    async def messages(self, request: Request) -> Response:
        call = anthropic.parse(await _json(request), self.served.generation)
        stream = anthropic.Events(self.served.model_id) if call.stream else None
        return await self._respond(request, call, stream, anthropic.message_body)

    async def _respond(
        self, request: Request, call: openai.ChatRequest, stream: Any, whole: Callable[[Any, str], dict[str, Any]]
    ) -> Response:
        """The answer whole (JSON), or as `stream` shapes its events (server-sent events)."""
        self.served.check_model(call.model)
        events = self._answer(request, self.served.conversation(call.messages), call.options)
        first = await anext(events)  # a failure before the first token is a status of its own
        if stream is None:
            done = first if isinstance(first, Done) else await _last(events)
            _record(request, done)
            return JSONResponse(whole(done.completion, self.served.model_id))

        async def body() -> AsyncIterator[str]:
            yield stream.start()
            async for event in _resumed(first, events, request):
                if isinstance(event, Done):
                    yield stream.end(event.completion)
                elif isinstance(event, ApiError):
                    yield stream.error(event)
                else:
                    yield stream.delta(event)

        return _sse(body())

    async def models(self, request: Request) -> Response:
        s = self.served
        if "anthropic-version" in request.headers:  # the anthropic SDK's models.list()
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.created))
            entry = {"type": "model", "id": s.model_id, "display_name": s.model_id, "created_at": created}
            return JSONResponse({"data": [entry], "has_more": False, "first_id": s.model_id, "last_id": s.model_id})
        entry = {
            "id": s.model_id,
            "object": "model",
            "created": s.created,
            "owned_by": "mmchat",
            "modalities": s.modalities,
            "max_model_len": s.capabilities.n_ctx,
        }
        return JSONResponse({"object": "list", "data": [entry]})

    async def health(self, request: Request) -> Response:
        w = self.worker
        status = "draining" if w.closing else "ok"
        body = {"status": status, "model": self.served.model_id, "busy": w.busy, "waiting": w.waiting}
        return JSONResponse(body, status_code=503 if w.closing else 200)

    async def _answer(self, request: Request, messages: Any, options: GenerationOptions) -> AsyncIterator[Any]:
        """The job's events (text, then Done); a failure before any text is raised, one after it yielded.
        The client going away (a disconnect, or the response closed early) cancels the job."""
        job = self.worker.submit(messages, options)  # ApiError 503 when the queue is full
        watcher = asyncio.create_task(_watch(request, self.worker, job))
        texts = 0
        try:
            while True:
                event = await job.next()
                if isinstance(event, Failed):
                    error = from_exception(event.error)
                    if texts == 0:
                        raise error
                    yield error
                    return
                yield event
                if isinstance(event, Done):
                    return
                texts += 1
        finally:
            watcher.cancel()
            if not job.finished:
                request.state.cancelled = True
                self.worker.cancel(job)


async def _watch(request: Request, worker: Worker, job: Job) -> None:
    """Cancel the job when the client disconnects (while it waits, is answered, or is streamed to)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            if not job.finished:
                request.state.cancelled = True
                worker.cancel(job)
            return


async def _resumed(first: Any, events: AsyncIterator[Any], request: Request) -> AsyncIterator[Any]:
    yield first
    if isinstance(first, Done):
        _record(request, first)
        return
    async for event in events:
        if isinstance(event, Done):
            _record(request, event)
        yield event


async def _last(events: AsyncIterator[Any]) -> Done:
    async for event in events:
        if isinstance(event, ApiError):
            raise event
        if isinstance(event, Done):
            return event
    raise ApiError(500, "the answer ended without a result")


def _record(request: Request, done: Done) -> None:
    """What the access line says of the tokens."""
    u = done.completion.usage
    request.state.tokens = (u.prompt_tokens, u.cached_tokens, u.completion_tokens)


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ApiError(400, f"the request body is not JSON ({e})", code="invalid_json") from None
