"""Runner: the Python API. Messages in, a chat completion (or a stream of text) out.

Every entry point (CLI, REPL, scripts) goes through here: options are built and checked
(options.py), the media resolver turns parts into decoded segments (inputs.py), and the
engine gets turns of text, pixels and samples.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from . import config
from .engine.base import Capabilities, Engine, Event, MediaCost, Plan, Progress, Segment, Stats, Timings, Turn
from .engine.layout import skipped_frames
from .env import current
from .errors import InputError, PixelsReleased
from .inputs.part import MediaPart, media_parts
from .inputs.policy import MediaPolicy
from .inputs.resolver import Attachment, MediaResolver, OnMedia
from .media import Audio, Image, Kind
from .messages import validate_messages
from .models.target import Target, find_target
from .options import GenerationOptions, LoadOptions, MediaOptions, RemoteOptions, RequestOptions, split_request
from .results import ChatCompletion, CompletionStream


class Runner:
    """A loaded model you can chat with.

    >>> runner = Runner(model="model.gguf", mmproj="mmproj.gguf", n_ctx=4096)
    >>> reply = runner.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
    >>> reply.choices[0].message.content

    `model` is a GGUF path, a registry name (`mmchat models`), hf:owner/repo[:QUANT], or a
    `Target` that mmchat.models.target.find_target has found (what the CLI passes); with
    pull=True a named model that is not downloaded yet is fetched first; `which=` and
    `in_situ_quant=` name it as mistral.rs does. Keyword
    options are those of `LoadOptions` (n_ctx, n_gpu_layers, threads, chat_template,
    image_max_tokens, mmproj_offload) and `MediaOptions` (image_max_side, video_fps, video_max_frames,
    video_audio, video_max_side), or give the objects themselves as `load=` and `media=`.

    With `base_url` (or MMCHAT_BASE_URL) an OpenAI-compatible server answers instead (llama-server,
    vLLM, SGLang): `model` is then the server's model id (default: the first it lists), `api_key`
    falls back to MMCHAT_API_KEY and OPENAI_API_KEY, and `timeout=`, `retries=`, `modalities=`
    are the `RemoteOptions` (or give `remote=`). Media are still read and decoded here, so bad
    input fails before the network.

    `on_completion(messages, completion, digests)` is called after every whole answer, with the
    sha256 of each medium read (`media_digests`): the conversation log (mmchat/log/) listens there.

    A conversation's KV state can outlive the process: `save_state()` after an answer keeps it on
    disk (beside the media cache; `cache=False` keeps none), and a later `chat()` on the same
    conversation with the same model and settings, here or in a new process, restores it instead of
    evaluating it again: it answers the same, only sooner (docs/kv-state.md). `states=` takes a
    `StateStore` of your own (mmchat.engine.kvstate: a memory tier for several conversations at once).

    `policy=` takes a `MediaPolicy`: what a service may read (mmchat.inputs.policy). Parts naming
    this machine's clipboard, screen or microphone (clipboard:, screen:, mic:SECONDS) are refused unless
    `devices=True` (or the policy's own `devices=True`): the CLI allows them, a service must not.
    """

    def __init__(
        self,
        model: str | Path | Target | None = None,
        mmproj: str | Path | None = None,
        *,
        load: LoadOptions | None = None,
        media: MediaOptions | None = None,
        policy: MediaPolicy | None = None,
        devices: bool = False,
        generation: GenerationOptions | None = None,
        remote: RemoteOptions | None = None,
        verbose: bool = False,
        notice: Callable[[str], None] | None = None,
        engine: Engine | None = None,
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        on_completion: Callable[[Sequence[dict[str, Any]], ChatCompletion, dict[str, str | None]], None] | None = None,
        pull: bool = False,
        quiet: bool = False,
        which: Any = None,
        in_situ_quant: str | None = None,
        states: Any = None,
        **options: Any,
    ):
        if isinstance(media, MediaPolicy):
            raise InputError("a MediaPolicy is given as policy=MediaPolicy(...); media= takes MediaOptions")
        remote_values = {k: options.pop(k) for k in list(options) if k in RemoteOptions.names()}
        load_values = {k: options.pop(k) for k in list(options) if k in LoadOptions.names()}
        self.load = LoadOptions.build(load_values, base=load or LoadOptions())
        self.media = MediaOptions.build(options, base=media or MediaOptions())  # an unknown name fails here
        given = RemoteOptions.build(remote_values, base=remote or RemoteOptions())
        self.remote = given.with_environment(os.environ)
        self.generation = generation or GenerationOptions()
        self._preparing = threading.Lock()
        self._progress = self.progress = progress  # long steps report here; `batch` adds its own bar
        self.on_completion = on_completion  # (messages, completion, media digests): the conversation log
        self._notice = notice or current().notice
        self._states, self._verbose = states, verbose
        t0 = time.perf_counter()
        if engine is None:
            target = (
                model
                if isinstance(model, Target)
                else find_target(
                    model,
                    mmproj,
                    base_url=self.remote.base_url,
                    base_url_from="base_url=" if given.base_url else "MMCHAT_BASE_URL",
                    modalities=self.remote.modalities,
                    which=which,
                    in_situ_quant=in_situ_quant,
                    pull=pull,
                    progress=not quiet,
                    warn=lambda m: self._notice(f"warning: {m}"),
                )
            )
            engine = self._open(target, verbose=verbose)
        self.engine = engine
        self.inputs = MediaResolver(
            engine.capabilities(), stdin=stdin, progress=progress, policy=policy, notice=self._notice, devices=devices
        )
        self._load_time: float | None = time.perf_counter() - t0  # reported by the first request

    def _open(self, target: Target, *, verbose: bool) -> Engine:
        """The engine for a target: a server's client, or the model loaded here."""
        if target.remote:
            from .engine.remote import RemoteEngine

            kinds = target.modalities if target.modalities is not None else self.remote.modalities
            return RemoteEngine(
                target.base_url or "",
                model=target.server_model,
                api_key=self.remote.api_key,
                timeout=self.remote.timeout,
                retries=self.remote.retries,
                modalities=kinds,
                kind=self.remote.server_kind,
                notice=self._notice,
            )
        from .engine.llamacpp import LlamaCppEngine

        assert target.model is not None
        return LlamaCppEngine(
            target.model,
            target.mmproj,
            n_ctx=self.load.n_ctx,
            n_gpu_layers=self.load.n_gpu_layers,
            threads=self.load.threads,
            chat_template=_read_template(self.load.chat_template),
            image_max_tokens=self.load.image_max_tokens,
            verbose=verbose,
            notice=self._notice,
            progress=self._progress,
            mmproj_offload=self.load.mmproj_offload,
            media_cache=config.cache_dir() if self.load.cache else None,
            media_cache_bytes=self.load.cache_size,
            draft=self.load.draft,
            draft_min=self.load.draft_min,
            states=self._states if self._states is not None else self._disk_states(),
        )

    def _disk_states(self) -> Any:
        """Saved KV states on disk beside the media cache (none with cache=False); damaged ones are said under -v."""
        if not self.load.cache:
            return None
        from .engine.kvstate import DiskStates, StateStore

        disk = DiskStates(
            config.kv_state_dir(), self.load.kv_cache_size, notice=self._notice if self._verbose else None
        )
        return StateStore(disk=disk, min_tokens=config.DEFAULT_KV_STATE_MIN_TOKENS)

    # -- public API ------------------------------------------------------------------

    def send_chat_completion_request(self, request: Any) -> Any:
        """A mistral.rs-style ChatCompletionRequest: the completion, or with stream=True an iterator of chunks."""
        from .request import send

        return send(self, request)

    def capabilities(self) -> Capabilities:
        return self.engine.capabilities()

    def chat(
        self, messages: Sequence[dict[str, Any]], options: GenerationOptions | None = None, **kwargs: Any
    ) -> ChatCompletion:
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

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        options: GenerationOptions | None = None,
        *,
        on_media: OnMedia | None = None,
        **kwargs: Any,
    ) -> CompletionStream:
        """Like chat(), but iterate to get text deltas as they are generated. `on_media(ref, segments)`
        hears each media part once it is decoded, before the model sees any (`ask --preview`)."""
        request = split_request(kwargs, generation=options or self.generation, media=self.media)
        messages = validate_messages(messages)  # once: the resolver, the digests and the log take the checked list
        extra = Timings()
        if self._load_time is not None:
            extra.load, self._load_time = self._load_time, None
        t0 = time.perf_counter()
        with self._preparing:  # what was read is taken now: another request may settle the cache before this one ends
            turns = self.inputs.turns(messages, request.media, on_media)
            read = self.inputs.read_for(messages) if self.on_completion is not None else {}
        extra.media_decode = time.perf_counter() - t0
        events = self._events(messages, request, turns)
        done = functools.partial(self._completed, messages, read) if self.on_completion is not None else None
        return CompletionStream(events, self.capabilities().model_name, extra, on_complete=done)

    def _events(
        self, messages: Sequence[dict[str, Any]], request: RequestOptions, turns: list[Turn]
    ) -> Iterator[Event]:
        """The engine's answer; then the pixels of what it now holds encoded are let go (a follow-up
        gives those images as stand-ins). An image let go whose encoding left every cache since is
        read and decoded again, once: the engine says so before its first event."""
        skipped = sum(skipped_frames(turn.segments) for turn in turns)
        try:
            yield from _counting(self.engine.stream(turns, request.generation), skipped)
        except PixelsReleased:
            yield from _counting(self.engine.stream(self._again(messages, request.media), request.generation), skipped)
        with self._preparing:
            self.inputs.release(self.engine.holds)

    def _again(self, messages: Sequence[dict[str, Any]], media: MediaOptions) -> list[Turn]:
        with self._preparing:
            self.inputs.drop_released()
            return self.inputs.turns(messages, media)

    def _completed(self, messages: Sequence[dict[str, Any]], read: dict[str, Any], completion: ChatCompletion) -> None:
        assert self.on_completion is not None
        self.on_completion(messages, completion, {url: self.inputs.sha256(url, found) for url, found in read.items()})

    def save_state(self, *, disk: bool = True) -> bool:
        """Keep the KV state of the conversation answered last (its prompt and the answer), so that
        continuing it later, in this process or (disk) a new one, restores it instead of evaluating it
        again. `ask` with the log on, `chat` and `batch` call it after an answer. False when nothing was
        kept: cache=False, a server, a conversation shorter than a few dozen tokens, a state over half the cap."""
        if not self.load.cache and self._states is None:
            return False
        return self.engine.save_state(disk=disk)

    def prepare(
        self, messages: Sequence[dict[str, Any]], media: MediaOptions | None = None, on_media: OnMedia | None = None
    ) -> list[Turn]:
        """Validate, check media against the model, then read and decode every media part."""
        with self._preparing:  # `batch --concurrency` prepares from several threads
            return self.inputs.turns(messages, media or self.media, on_media)

    def media_digests(self, messages: Sequence[dict[str, Any]]) -> dict[str, str | None]:
        """url -> sha256 of the bytes this runner read for each media part of the latest conversation
        (None: not read here)."""
        return {part.url: self.inputs.digest(part.url) for part in media_parts(messages)}

    def forget(self) -> None:
        """Keep nothing in memory for a follow-up: the decoded media of the last request go (encoded
        media stay in the disk cache). `batch` calls it after each answer; a conversation never needs to."""
        with self._preparing:
            self.inputs.forget()

    def check_kind(self, kind: Kind, url: str) -> None:
        """Refuse a kind of media this model cannot take, before it is read or captured."""
        self.inputs.check_kind(kind, url)

    def check_media(self, messages: Sequence[dict[str, Any]]) -> None:
        """Refuse media this model cannot take, before anything is read."""
        self.inputs.check(messages)

    def prompt(self, messages: Sequence[dict[str, Any]]) -> str:
        """The prompt a conversation becomes for this model, as text, each medium as `<__media__>`
        (llama.cpp's marker): what the chat template made of it. A server renders its own."""
        text = self.engine.prompt(self.prepare(messages))
        if text is None:
            raise InputError(f"{self.capabilities().model_name} runs on a server, which renders its own prompt")
        return text

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
        return [s for s in self.decoded(attachment) if not isinstance(s, str)]

    def decoded(self, attachment: Attachment) -> list[Segment]:
        """An attachment as its turn will give it to the model (a video with its stamps), from the resolver's cache."""
        return self.inputs.segments(MediaPart(attachment.part_kind, attachment.url, {}, "attach"), self.media)

    def encode_ahead(
        self,
        media: Sequence[Image | Audio],
        report: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_plan: Plan | None = None,
    ) -> bool:
        """Encode decoded media before the turn that holds them (the REPL does while the user types);
        False when `should_stop` ended it early; `on_plan(costs)` hears their token costs first."""
        return self.engine.prepare(media, report, should_stop, on_plan=on_plan)

    def media_costs(self, media: Sequence[Image | Audio]) -> list[MediaCost]:
        """What each decoded medium costs this model in tokens (a preview's caption), without encoding it."""
        return self.engine.costs(media)

    @property
    def stats(self) -> Stats:
        """What the engine's caches saved since it was loaded (tokens reused, media encoded or found
        cached, KV states) and the encoded media it holds in memory: a copy, as it stands now."""
        return dataclasses.replace(self.engine.stats)

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


def _counting(events: Iterator[Event], skipped: int) -> Iterator[Event]:
    """The engine's events, their usage saying how many video frames were skipped as unchanged."""
    for event in events:
        usage = getattr(event, "usage", None)
        if usage is not None:
            usage.frames_skipped = skipped
        yield event
