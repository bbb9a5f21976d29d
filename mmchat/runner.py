"""Runner: the Python API. Messages in, a chat completion (or a stream of text) out.

Every entry point (CLI, REPL, scripts) goes through here: options are built and checked
(options.py), the media resolver turns parts into decoded segments (inputs.py), and the
engine gets turns of text, pixels and samples.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from . import config
from .engine.base import Capabilities, Engine, Event, Progress, Timings, Turn
from .errors import InputError, ModelNotFound, PixelsReleased
from .inputs.policy import MediaPolicy
from .inputs.resolver import Attachment, MediaRef, MediaResolver, iter_media
from .media import Audio, Image, Kind
from .messages import validate_messages
from .options import GenerationOptions, LoadOptions, MediaOptions, RemoteOptions, RequestOptions, split_request
from .results import ChatCompletion, CompletionStream


def find_mmproj(model: Path) -> Path | None:
    """The projector that sits next to a model, when there is exactly one."""
    found = sorted(model.parent.glob("mmproj*.gguf"))
    return found[0] if len(found) == 1 else None


class Runner:
    """A loaded model you can chat with.

    >>> runner = Runner(model="model.gguf", mmproj="mmproj.gguf", n_ctx=4096)
    >>> reply = runner.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
    >>> reply.choices[0].message.content

    `model` is a GGUF path, a registry name (`mmchat models`) or hf:owner/repo[:QUANT];
    with pull=True a named model that is not downloaded yet is fetched first. Keyword
    options are those of `LoadOptions` (n_ctx, n_gpu_layers, threads, chat_template,
    image_max_tokens) and `MediaOptions` (image_max_side, video_fps, video_max_frames,
    video_audio, video_max_side), or give the objects themselves as `load=` and `media=`.

    With `base_url` an OpenAI-compatible server answers instead (llama-server, vLLM, SGLang):
    `model` is then the server's model id (default: the first it lists), `api_key` falls back
    to MMCHAT_API_KEY and OPENAI_API_KEY, and `timeout=`, `retries=`, `modalities=` are the
    `RemoteOptions`. Media are still read and decoded here, so bad input fails before the network.

    `on_completion(messages, completion, digests)` is called after every whole answer, with the
    sha256 of each medium read (`media_digests`): the conversation log (mmchat/logs.py) listens there.

    `media=` (or `policy=`) also takes a `MediaPolicy`: what a service may read (mmchat.inputs.policy).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        mmproj: str | Path | None = None,
        *,
        load: LoadOptions | None = None,
        media: MediaOptions | MediaPolicy | None = None,
        policy: MediaPolicy | None = None,
        generation: GenerationOptions | None = None,
        verbose: bool = False,
        notice: Callable[[str], None] | None = None,
        engine: Engine | None = None,
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        pull: bool = False,
        quiet: bool = False,
        base_url: str | None = None,
        api_key: str | None = None,
        which: Any = None,
        in_situ_quant: str | None = None,
        on_completion: Callable[[Sequence[dict[str, Any]], ChatCompletion, dict[str, str | None]], None] | None = None,
        **options: Any,
    ):
        remote_values = {k: options.pop(k) for k in list(options) if k in RemoteOptions.names()}
        if isinstance(media, MediaPolicy):
            media, policy = None, media
        load_values = {k: options.pop(k) for k in list(options) if k in LoadOptions.names()}
        self.load = LoadOptions.build(load_values, base=load or LoadOptions())
        self.media = MediaOptions.build(options, base=media or MediaOptions())  # an unknown name fails here
        self.generation = generation or GenerationOptions()
        self._preparing = threading.Lock()
        self._progress = self.progress = progress  # long steps report here; `batch` adds its own bar
        self.on_completion = on_completion  # (messages, completion, media digests): the conversation log
        self._notice = notice or (lambda m: print(f"mmchat: {m}", file=sys.stderr))
        t0 = time.perf_counter()
        if which is not None or in_situ_quant is not None:  # mistral.rs's names for a model (which.py)
            model, mmproj = self._resolve_which(which, in_situ_quant, model, mmproj, quiet=quiet)
        if engine is None:
            engine = self._open_engine(model, mmproj, base_url=base_url, api_key=api_key, remote=remote_values,
                                       pull=pull, quiet=quiet, verbose=verbose)
        self.engine = engine
        self.inputs = MediaResolver(engine.capabilities(), stdin=stdin, progress=progress, policy=policy)
        self._load_time: float | None = time.perf_counter() - t0  # reported by the first request

    def _open_engine(self, model: str | Path | None, mmproj: str | Path | None, *, base_url: str | None,
                     api_key: str | None, remote: dict[str, Any], pull: bool, quiet: bool, verbose: bool) -> Engine:
        """A server when there is a base URL (given, or a models.toml entry's); else the local model."""
        target = server_for(model, base_url, remote.get("modalities"))
        if target is not None:
            url, server_model, kinds = target
            options = RemoteOptions.build({**remote, "base_url": url, "api_key": api_key, "modalities": kinds})
            return _remote_engine(options, server_model, self._notice)
        model_path, mmproj_path = self._resolve(model, mmproj, pull=pull, quiet=quiet)
        from .engine.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            model_path, mmproj_path, n_ctx=self.load.n_ctx, n_gpu_layers=self.load.n_gpu_layers,
            threads=self.load.threads, chat_template=_read_template(self.load.chat_template),
            image_max_tokens=self.load.image_max_tokens, verbose=verbose, notice=self._notice, progress=self._progress,
            media_cache=config.cache_dir() if self.load.cache else None, media_cache_bytes=self.load.cache_size,
        )

    def _resolve(self, model: str | Path | None, mmproj: str | Path | None, *, pull: bool,
                 quiet: bool) -> tuple[Path, Path | None]:
        from .models import registry

        resolved = registry.resolve(model, pull=pull, progress=not quiet,
                                    warn=lambda m: self._notice(f"warning: {m}"))
        if mmproj is not None:
            mmproj_path = Path(mmproj).expanduser()
            if not mmproj_path.is_file():
                raise ModelNotFound(f"projector file not found: {mmproj}: give the path to an mmproj-*.gguf")
            return resolved.model, mmproj_path
        return resolved.model, resolved.mmproj or find_mmproj(resolved.model)

    def _resolve_which(self, which: Any, in_situ_quant: str | None, model: Any, mmproj: Any, *,
                       quiet: bool) -> tuple[Path, Path | None]:
        if which is None or model is not None or mmproj is not None:
            raise InputError("give a model either as which=Which...(...) (with in_situ_quant=) or as model=/mmproj=")
        from .models.which import resolve

        found = resolve(which, in_situ_quant, progress=not quiet, warn=lambda m: self._notice(f"warning: {m}"))
        return found.model, found.mmproj

    # -- public API ------------------------------------------------------------------

    def send_chat_completion_request(self, request: Any) -> Any:
        """A mistral.rs-style ChatCompletionRequest: the completion, or with stream=True an iterator of chunks."""
        from .request import send

        return send(self, request)

    def capabilities(self) -> Capabilities:
        return self.engine.capabilities()

    def chat(self, messages: Sequence[dict[str, Any]], options: GenerationOptions | None = None,
             **kwargs: Any) -> ChatCompletion:
        """Answer a conversation.

        Keyword options: those of `GenerationOptions` (max_tokens, temperature, top_k, top_p,
        min_p, repeat_penalty, seed, stop, grammar), `schema=` (a JSON schema, as a dict or its
        text, that the answer must follow), and this request's media options (video_fps,
        video_max_frames, video_audio, image_max_side, ...) that a part's own keys override.
        """
        stream = self.stream(messages, options, **kwargs)
        for _ in stream:
            pass
        assert stream.completion is not None
        return stream.completion

    def stream(self, messages: Sequence[dict[str, Any]], options: GenerationOptions | None = None,
               **kwargs: Any) -> CompletionStream:
        """Like chat(), but iterate to get text deltas as they are generated."""
        request = split_request(kwargs, generation=options or self.generation, media=self.media)
        extra = Timings()
        if self._load_time is not None:
            extra.load, self._load_time = self._load_time, None
        t0 = time.perf_counter()
        with self._preparing:  # what was read is taken now: another request may settle the cache before this one ends
            turns = self.inputs.turns(messages, request.media)
            read = self.inputs.read_for(validate_messages(messages)) if self.on_completion is not None else {}
        extra.media_decode = time.perf_counter() - t0
        events = self._events(messages, request, turns)
        done = functools.partial(self._completed, messages, read) if self.on_completion is not None else None
        return CompletionStream(events, self.capabilities().model_name, extra, on_complete=done)

    def _events(self, messages: Sequence[dict[str, Any]], request: RequestOptions,
                turns: list[Turn]) -> Iterator[Event]:
        """The engine's answer; then the pixels of what it now holds encoded are let go (a follow-up
        gives those images as stand-ins). An image let go whose encoding left every cache since is
        read and decoded again, once: the engine says so before its first event."""
        try:
            yield from self.engine.stream(turns, request.generation)
        except PixelsReleased:
            yield from self.engine.stream(self._again(messages, request.media), request.generation)
        with self._preparing:
            self.inputs.release(self.engine.holds)

    def _again(self, messages: Sequence[dict[str, Any]], media: MediaOptions) -> list[Turn]:
        with self._preparing:
            self.inputs.drop_released()
            return self.inputs.turns(messages, media)

    def _completed(self, messages: Sequence[dict[str, Any]], read: dict[str, Any], completion: ChatCompletion) -> None:
        assert self.on_completion is not None
        self.on_completion(messages, completion, {url: self.inputs.sha256(url, found) for url, found in read.items()})

    def prepare(self, messages: Sequence[dict[str, Any]], media: MediaOptions | None = None) -> list[Turn]:
        """Validate, check media against the model, then read and decode every media part."""
        with self._preparing:  # `batch --concurrency` prepares from several threads
            return self.inputs.turns(messages, media or self.media)

    def media_digests(self, messages: Sequence[dict[str, Any]]) -> dict[str, str | None]:
        """url -> sha256 of the bytes this runner read for each media part of the latest conversation
        (None: not read here)."""
        return {ref.url: self.inputs.digest(ref.url) for ref in iter_media(validate_messages(messages))}

    def forget(self) -> None:
        """Keep nothing in memory for a follow-up: the decoded media of the last request go (encoded
        media stay in the disk cache). `batch` calls it after each answer; a conversation never needs to."""
        with self._preparing:
            self.inputs.forget()

    def check_media(self, messages: Sequence[dict[str, Any]]) -> None:
        """Refuse media this model cannot take, before anything is read."""
        self.inputs.check(messages)

    def count_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        """The exact prompt size of a conversation, in this model's tokens."""
        try:
            return self.engine.count_tokens(self.prepare(messages))
        except PixelsReleased:
            return self.engine.count_tokens(self._again(messages, self.media))

    def attachment(self, url: str, kind: Kind | None = None) -> Attachment:
        """A file or URL checked and decoded for a coming message (the REPL's /attach)."""
        return self.inputs.attachment(url, kind, self.media)

    def media_of(self, attachment: Attachment) -> list[Image | Audio]:
        """The decoded media of an attachment (from the resolver's cache), for an encode ahead of its turn."""
        segments = self.inputs.segments(MediaRef(attachment.kind, attachment.url, {}, "attach"), self.media)
        return [s for s in segments if not isinstance(s, str)]

    def close_progress(self) -> None:
        """Clear a progress display left open by an interrupted step."""
        close = getattr(self._progress, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        self.close_progress()
        self.engine.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def server_for(model: str | Path | None, base_url: str | None = None, modalities: Any = None, *,
               warn: Callable[[str], None] | None = None, known: Any = None) -> tuple[str, str | None, Any] | None:
    """(base URL, the server's model id, modalities) when a server answers: `base_url` given, or
    `model` (or the default) naming a models.toml entry that has one; None for a local model."""
    if base_url is not None:
        return base_url, None if model is None else str(model), modalities
    if isinstance(model, Path):
        return None
    from .models import registry

    entry = registry.served(model, warn=warn or (lambda m: None), known=known)
    if entry is None:
        return None
    return entry.base_url, entry.server_model or None, modalities if modalities is not None else entry.modalities or None


def _remote_engine(remote: RemoteOptions, model: str | None, notice: Callable[[str], None]) -> Engine:
    import os

    from .engine.remote import RemoteEngine

    api_key = remote.api_key or os.environ.get("MMCHAT_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return RemoteEngine(remote.base_url or "", model=model, api_key=api_key, timeout=remote.timeout,
                        retries=remote.retries, modalities=remote.modalities, notice=notice)


def _read_template(value: str | None) -> str | None:
    """--chat-template: a Jinja file's text, or a llama.cpp built-in name as is."""
    if value is None or "{{" in value or "{%" in value:
        return value  # none, or a template's text itself
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the chat template {value}: {e}") from None
    return value
