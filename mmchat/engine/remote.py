"""A model behind an OpenAI-compatible chat server (llama-server, vLLM, SGLang, llama-cpp-python).

The same Engine interface as the local one: turns of text and decoded media in, events out.
What the server takes is asked once, at start (`/v1/models`, and llama-server's `/props` for
modalities and context size), so a kind it lacks is refused before anything is read; which
server it is (owned_by, or --server-kind) picks the names its requests use (engine/dialects.py). Answers
stream by server-sent events; a busy (429) or failing (5xx) server is asked again with backoff,
a refusal (4xx) is the server's own message, exit 2; an unreachable or silent one is exit 1.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from .. import config
from ..errors import InputError, ServerError, ServerRefused
from ..media import Audio, Image
from ..options import GenerationOptions
from . import wire
from .base import Capabilities, Event, Finished, MediaCost, Plan, Started, Stats, Timings, Turn, Usage
from .dialects import DIALECTS, Dialect, identify, unsent

log = logging.getLogger("mmchat.engine")

_RETRY_STATUS = {429, 500, 502, 503, 504}
_MAX_BACKOFF = 30.0  # seconds: a Retry-After longer than this is not waited for
#: prompt-size estimates for the REPL's window (a server has no exact count for media)
_CHARS_PER_TOKEN = 3
_TOKENS_PER_IMAGE = 256
_TOKENS_PER_AUDIO_WINDOW = 750  # whisper-style encoders: every 30 s window
#: the fewest tokens a second of sound costs in the projectors llama.cpp runs (Gemma's: 6.25);
#: a recording longer than the server's context allows even at that rate is refused unsent
_LEAST_AUDIO_TOKENS_PER_SECOND = 6.25


def _least_audio_tokens(seconds: float) -> int:
    return math.ceil(seconds * _LEAST_AUDIO_TOKENS_PER_SECOND)


def api_urls(base_url: str) -> tuple[str, str]:
    """(server root, OpenAI API root) from http://host:port or http://host:port/v1."""
    url = base_url.rstrip("/")
    if url.endswith("/v1"):
        return url[: -len("/v1")], url
    return url, url + "/v1"


class RemoteEngine:
    """An OpenAI-compatible server as an Engine; mmchat decodes, the server encodes and generates."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = config.DEFAULT_SERVER_TIMEOUT,
        retries: int = config.DEFAULT_SERVER_RETRIES,
        modalities: Sequence[str] | None = None,
        kind: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if kind is not None and kind not in DIALECTS:
            raise InputError(f"server kind {kind!r} is not one mmchat knows: give one of {', '.join(DIALECTS)}")
        self.root, self.api = api_urls(base_url)
        self.timeout, self.retries, self._sleep = timeout, retries, sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers=headers,
            transport=transport,
            follow_redirects=True,
        )
        self.stats = Stats()
        self._warned: set[str] = set()  # options the server has nothing for, named once (batch threads share it)
        self._warning = threading.Lock()
        self._caps, self.model, self.dialect = self._discover(model, modalities, kind)

    # -- what the server is ------------------------------------------------------------

    def _discover(
        self, model: str | None, modalities: Sequence[str] | None, kind: str | None
    ) -> tuple[Capabilities, str | None, Dialect]:
        listed = self._get_json(f"{self.api}/models", required=model is None) or {}
        entries = [m for m in listed.get("data", []) if isinstance(m, dict) and m.get("id")]
        chosen = next((m for m in entries if m["id"] == model), None) if model else (entries[0] if entries else None)
        if model is None and chosen is None:
            raise ServerError(f"the server at {self.api}/models lists no model: give its model id with --model")
        props = self._get_json(f"{self.root}/props", required=False) or {}
        kinds = _props_modalities(props)
        if kinds is None:  # mmchat serve lists them with the model
            kinds = _listed_modalities((chosen or {}).get("modalities"))
        if kinds is None:
            kinds = tuple(modalities) if modalities is not None else ("image", "audio", "video")
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or (chosen or {}).get("max_model_len")
        dialect = DIALECTS[kind] if kind else identify((chosen or {}).get("owned_by"), props)
        known = isinstance(n_ctx, int) and n_ctx > 0
        caps = Capabilities(
            vision="image" in kinds or "video" in kinds,
            audio="audio" in kinds,
            audio_sample_rate=config.DEFAULT_REMOTE_SAMPLE_RATE,
            n_ctx=int(n_ctx) if known else 32768,
            model_name=model or chosen["id"],  # type: ignore[index]
            audio_tokens=_least_audio_tokens if known else None,
            concurrent=True,
        )
        return caps, model or chosen["id"], dialect  # type: ignore[index]

    def _get_json(self, url: str, *, required: bool) -> dict[str, Any] | None:
        """The JSON object at `url`; None when the server has none there and it is not `required`."""
        try:
            response = self._client.get(url, timeout=min(self.timeout, 30.0))
        except httpx.HTTPError as e:
            raise _transport_error(url, e, self.timeout) from None
        if required:
            if response.status_code >= 400:
                raise _status_error(url, response)
            return _json(response, url)
        try:
            data = response.json() if response.status_code == 200 else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def capabilities(self) -> Capabilities:
        return self._caps

    def count_tokens(self, turns: Sequence[Turn]) -> int:
        """An estimate: a server has no exact count for a prompt with media in it."""
        total = 0
        for turn in turns:
            for s in turn.segments:
                if isinstance(s, str):
                    total += math.ceil(len(s) / _CHARS_PER_TOKEN)
                elif isinstance(s, Image):
                    total += _TOKENS_PER_IMAGE
                elif isinstance(s, Audio):
                    total += _TOKENS_PER_AUDIO_WINDOW * max(1, math.ceil(s.duration / 30))
        return total

    def prepare(
        self,
        media: Sequence[Image | Audio],
        report: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_plan: Plan | None = None,
    ) -> bool:
        if on_plan is not None:
            on_plan(self.costs(media))
        return True  # the server encodes media with each request; nothing to do ahead of it

    def costs(self, media: Sequence[Image | Audio]) -> list[MediaCost]:
        """count_tokens' estimate per medium: the server counts for itself."""
        return [MediaCost(self.count_tokens([Turn("user", (m,))]), exact=False) for m in media]

    # -- answers -----------------------------------------------------------------------

    def stream(self, turns: Sequence[Turn], options: GenerationOptions) -> Iterator[Event]:
        url = f"{self.api}/chat/completions"
        body = wire.body(self.model, turns, options, dialect=self.dialect, where=self.api)
        self._warn_unsent(options)
        images, audio = wire.media_count(turns)
        usage, timings = Usage(encoded_media=images + audio), Timings()
        t0 = time.perf_counter()
        response = self._post(url, body)
        finish, t_first, server_timed = "stop", None, False
        try:
            yield Started(usage, timings)  # the server took the request
            for chunk in _events(response, url, self.timeout):
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        if t_first is None:
                            t_first = time.perf_counter()
                            timings.first_token = timings.prompt = t_first - t0
                        usage.completion_tokens += 1  # a count for servers that report none
                        yield text
                    finish = choice.get("finish_reason") or finish
                _read_usage(chunk, usage)  # what the server counted wins
                server_timed = _read_timings(chunk, timings) or server_timed
        finally:
            response.close()  # Ctrl-C or a closed pipe: the server stops generating too
        if not server_timed:
            timings.generation = time.perf_counter() - (t_first or t0)
        self.stats.prompt_tokens_evaluated += usage.prompt_tokens
        yield Finished(finish_reason=finish, usage=usage, timings=timings)

    def _warn_unsent(self, options: GenerationOptions) -> None:
        """One warning for the options in force that this server has no field for, never a silent drop."""
        with self._warning:
            new = [name for name in unsent(options, self.dialect) if name not in self._warned]
            self._warned.update(new)
        if new:
            hint = (
                " (if it is llama-server, vLLM or SGLang behind a proxy, say so with --server-kind)"
                if self.dialect.kind == "openai"
                else ""
            )
            log.warning(
                f"the server at {self.api} ({self.dialect.name}) has nothing for "
                f"{', '.join(new)}: {'it is' if len(new) == 1 else 'they are'} not applied to its answers{hint}"
            )

    def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        """The streaming response, once the server takes the request; 429 and 5xx are retried."""
        for attempt in range(self.retries + 1):
            try:
                response = self._client.send(self._client.build_request("POST", url, json=body), stream=True)
            except httpx.HTTPError as e:
                raise _transport_error(url, e, self.timeout) from None
            if response.status_code < 400:
                return response
            response.read()
            response.close()
            if response.status_code not in _RETRY_STATUS or attempt == self.retries:
                raise _status_error(url, response, attempts=attempt + 1)
            wait = _backoff(response, attempt)
            log.info(f"the server at {url} answered HTTP {response.status_code}; asking again in {wait:.1f} s")
            self._sleep(wait)
        raise AssertionError("unreachable")

    def holds(self, medium: Image | Audio) -> bool:
        return False  # every request carries its media

    def prompt(self, turns: Sequence[Turn]) -> None:
        return None  # the server applies its own chat template

    def save_state(self, *, disk: bool = True) -> bool:
        return False  # the server keeps (or not) its own KV cache

    def close(self) -> None:
        self._client.close()


def _events(response: httpx.Response, url: str, timeout: float) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream (or of a plain JSON answer)."""
    try:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
            yield from _as_chunks(_json(response, url))
            return
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ServerError(f"the server at {url} sent an event that is not JSON: {data[:80]}") from None
            if isinstance(chunk, dict) and chunk.get("error"):
                raise ServerError(f"the server at {url} failed mid-answer: {_message(chunk)}")
            if isinstance(chunk, dict):
                yield chunk
    except httpx.HTTPError as e:
        raise _transport_error(url, e, timeout) from None


def _as_chunks(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A non-streamed chat.completion, as the one chunk that carries it all."""
    choices = [
        {"delta": {"content": (c.get("message") or {}).get("content") or ""}, "finish_reason": c.get("finish_reason")}
        for c in data.get("choices") or []
    ]
    yield {"choices": choices, "usage": data.get("usage"), "timings": data.get("timings")}


def _read_usage(chunk: dict[str, Any], usage: Usage) -> None:
    """Token counts as the server reports them (OpenAI's usage, or llama-server's timings)."""
    reported = chunk.get("usage") or {}
    timings = chunk.get("timings") or {}
    prompt = reported.get("prompt_tokens", timings.get("prompt_n"))
    completion = reported.get("completion_tokens", timings.get("predicted_n"))
    if isinstance(prompt, int):
        usage.prompt_tokens = prompt
    if isinstance(completion, int):
        usage.completion_tokens = completion
    details = reported.get("prompt_tokens_details") or {}
    if isinstance(details.get("cached_tokens"), int):
        usage.cached_tokens = details["cached_tokens"]


def _read_timings(chunk: dict[str, Any], timings: Timings) -> bool:
    """llama-server's own prompt and generation times, which leave out the network; True when given."""
    reported = chunk.get("timings") or {}
    prompt, predicted = reported.get("prompt_ms"), reported.get("predicted_ms")
    if not isinstance(prompt, (int, float)) or not isinstance(predicted, (int, float)):
        return False
    timings.prompt, timings.generation = prompt / 1000, predicted / 1000
    return True


def _backoff(response: httpx.Response, attempt: int) -> float:
    """The server's Retry-After when it gives one (capped), else 0.5 s, 1 s, 2 s, ..."""
    try:
        return min(_MAX_BACKOFF, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return min(_MAX_BACKOFF, 0.5 * 2**attempt)


def _json(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise ServerError(f"the server at {url} did not answer with JSON: is it an OpenAI-compatible server?") from None
    if not isinstance(data, dict):
        raise ServerError(
            f"the server at {url} answered a JSON {type(data).__name__}, not an object: is it an OpenAI-compatible server?"
        )
    return data


def _message(data: Any) -> str:
    """The server's own words: OpenAI's error.message, FastAPI's detail, or the text itself."""
    if isinstance(data, dict):
        error = data.get("error")
        found = error.get("message") if isinstance(error, dict) else error
        found = found or data.get("detail") or data.get("message")
        data = found if found else json.dumps(data)
    text = " ".join(str(data).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _status_error(url: str, response: httpx.Response, attempts: int = 1) -> InputError | ServerError:
    try:
        said = _message(response.json())
    except ValueError:
        said = _message(response.text) or response.reason_phrase
    code = response.status_code
    if code < 500 and code != 429:
        hint = " (check --api-key)" if code in (401, 403) else ""
        return ServerRefused(f"the server at {url} refused the request (HTTP {code}){hint}: {said}")
    tries = f" after {attempts} tries" if attempts > 1 else ""
    return ServerError(f"the server at {url} failed (HTTP {code}){tries}: {said}")


def _transport_error(url: str, error: httpx.HTTPError, timeout: float) -> ServerError:
    if isinstance(error, httpx.TimeoutException):
        what = "did not connect" if isinstance(error, httpx.ConnectTimeout) else f"did not answer within {timeout:g} s"
        return ServerError(f"the server at {url} {what} (--timeout)")
    if isinstance(error, httpx.ConnectError):
        return ServerError(
            f"cannot reach the server at {url}: {error or 'connection failed'} (is it running, and is the URL right?)"
        )
    return ServerError(f"the connection to the server at {url} failed: {error or type(error).__name__}")


def _listed_modalities(listed: Any) -> tuple[str, ...] | None:
    """mmchat serve's /v1/models entry says {"modalities": ["text", "image", "video", "audio"]}."""
    if not isinstance(listed, list):
        return None
    return tuple(k for k in ("image", "video", "audio") if k in listed)


def _props_modalities(props: dict[str, Any]) -> tuple[str, ...] | None:
    """llama-server's /props says {"modalities": {"vision": true, "audio": false}}."""
    found = props.get("modalities")
    if not isinstance(found, dict):
        return None
    kinds = ("image", "video") if found.get("vision") else ()
    return kinds + (("audio",) if found.get("audio") else ())
