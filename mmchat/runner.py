"""Runner: the Python API. Messages in, a chat completion (or a stream of text) out.

Every entry point (CLI, REPL, scripts, `serve`) goes through here with a `Target` already found
(models/target.py) and options already built (options/): the media resolver turns parts into
decoded segments (inputs/), and the engine gets turns of text, pixels and samples. `Runner.open` is the
Python user's edge: keywords checked, the environment read once (config.environ), the target found.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from . import config
from .engine.base import Capabilities, Engine, Event, MediaCost, Plan, Progress, Segment, Stats, Timings, Turn
from .engine.layout import skipped_frames
from .errors import InputError, PixelsReleased
from .inputs.policy import MediaPolicy
from .inputs.resolver import Attachment, MediaResolver, Messages, OnMedia
from .media import Audio, Image, Kind
from .messages import Conversation, parse_conversation
from .models.target import Local, Server, Target, find_target
from .options import GenerationOptions, LoadOptions, MediaOptions, RequestOptions, split_request
from .options.keywords import split_keywords
from .results import ChatCompletion, ChatCompletionChunk, CompletionStream

if TYPE_CHECKING:
    from .engine.kvstate import StateStore
    from .models.which import WhichModel
    from .request import ChatCompletionRequest

#: (the parsed conversation, completion, sha256 of each medium read): the conversation log listens here
OnCompletion = Callable[[Conversation, ChatCompletion, dict[str, str | None]], None]


class Runner:
    """A loaded model you can chat with.

    >>> runner = Runner.open("model.gguf", "mmproj.gguf", n_ctx=4096)
    >>> reply = runner.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
    >>> reply.choices[0].message.content

    `Runner(target, ...)` loads a `Target` that `find_target` found (`Local` files or a `Server`),
    with options already built: `load`, `media` and `generation` (frozen values; vary them with
    `dataclasses.replace`). `Runner.open(model, mmproj, base_url=..., **options)` finds the target
    first, as a Python user names it; the seed's call forms, `Runner(model=..., mmproj=..., n_ctx=...)`,
    `Runner(which=...)`, `Runner(base_url=...)`, keep working through it (see `__init__`).

    `on_completion(messages, completion, digests)` is called after every whole answer, with the
    sha256 of each medium read (`media_digests`): the conversation log (mmchat/log/) listens there.

    `save_state()` keeps a conversation's KV state on disk, so continuing it later, in a new process
    too, restores it instead of evaluating it again (docs/kv-state.md); `states=` takes a `StateStore`.
    `policy=` takes a `MediaPolicy` (what a service may read); clipboard:, screen: and mic: parts are
    refused unless `devices=True`: the CLI allows them, a service must not (docs/security.md).
    """

    def __init__(
        self,
        target: Target | str | Path | None = None,
        *seed: Any,
        load: LoadOptions | None = None,
        media: MediaOptions | None = None,
        generation: GenerationOptions | None = None,
        policy: MediaPolicy | None = None,
        devices: bool = False,
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        on_completion: OnCompletion | None = None,
        states: StateStore | None = None,
        engine: Engine | None = None,
        verbose: bool = False,
        **seed_options: Any,
    ):
        """Load `target` (or use `engine`, FakeEngine in tests); `verbose`: llama.cpp's own log on stderr.
        The seed's forms (a path or name first, a projector second; `model=`, `which=`, `base_url=` or an
        option's name as a keyword) are the one compatibility path: `Runner.open`'s resolution (`_resolved`)
        makes them a Target; a Target, or an engine alone, it leaves as it is. Their `notice=` is accepted
        and unused: diagnostics go to the `mmchat` logger."""
        seed_options.pop("notice", None)  # the seed's callback: the `mmchat` logger says it all now
        model = seed_options.pop("model", target)
        target, self.load, self.media = _resolved(model, *seed, load=load, media=media, engine=engine, **seed_options)
        self.generation = generation or GenerationOptions()
        self._preparing = threading.Lock()
        self._progress = self.progress = progress  # long steps report here; `batch` adds its own bar
        self.on_completion = on_completion  # (messages, completion, media digests): the conversation log
        self._states, self._verbose = states, verbose
        t0 = time.perf_counter()
        self.engine = engine = engine or self._open(target)  # type: ignore[arg-type]
        self.inputs = MediaResolver(
            engine.capabilities(), stdin=stdin, progress=progress, policy=policy, devices=devices
        )
        self._load_time: float | None = time.perf_counter() - t0  # reported by the first request

    @classmethod
    def open(
        cls,
        model: str | Path | None = None,
        mmproj: str | Path | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        which: WhichModel | None = None,
        in_situ_quant: str | int | None = None,
        pull: bool = False,
        **options: Any,
    ) -> Runner:
        """Find the model and load it: a GGUF path, a registry name (`mmchat models`), hf:owner/repo[:QUANT],
        mistral.rs's `which=Which...(...)` (with `in_situ_quant=`), or with `base_url` (else MMCHAT_BASE_URL)
        an OpenAI-compatible server whose model id `model` is (`api_key` else MMCHAT_API_KEY, OPENAI_API_KEY).
        `pull=True` downloads a named model first (`quiet=True`: no progress bar). Other keywords: the
        options of `LoadOptions`, `MediaOptions` and `RemoteOptions` by name, or `load=`, `media=`,
        `remote=`, `generation=` objects, and `Runner`'s own (`policy=`, `states=`, ...)."""
        named: dict[str, Any] = dict(
            base_url=base_url, api_key=api_key, which=which, in_situ_quant=in_situ_quant, pull=pull
        )
        own = {k: options.pop(k) for k in _OWN if k in options}
        target, load, media = _resolved(model, mmproj, engine=own.get("engine"), **named, **options)
        return cls(target, load=load, media=media, **own)

    def _open(self, target: Target) -> Engine:
        """The engine for a target: a server's client, or the model loaded here."""
        if isinstance(target, Server):
            from .engine.remote import RemoteEngine

            return RemoteEngine(
                target.url,
                model=target.model,
                api_key=target.api_key,
                timeout=target.timeout,
                retries=target.retries,
                modalities=target.modalities,
                kind=target.kind,
            )
        from .engine.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            target.model,
            target.mmproj,
            n_ctx=self.load.n_ctx,
            n_gpu_layers=self.load.n_gpu_layers,
            threads=self.load.threads,
            chat_template=_read_template(self.load.chat_template),
            image_max_tokens=self.load.image_max_tokens,
            verbose=self._verbose,
            progress=self._progress,
            mmproj_offload=self.load.mmproj_offload,
            media_cache=config.cache_dir() if self.load.cache else None,
            media_cache_bytes=self.load.cache_size,
            draft=self.load.draft,
            draft_min=self.load.draft_min,
            states=self._states if self._states is not None else kv_states(self.load),
        )

    # -- public API ------------------------------------------------------------------

    def send_chat_completion_request(
        self, request: ChatCompletionRequest
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """A mistral.rs-style ChatCompletionRequest: the completion, or with stream=True an iterator of chunks."""
        from .request import send

        return send(self, request)

    def capabilities(self) -> Capabilities:
        return self.engine.capabilities()

    def chat(self, messages: Messages, options: GenerationOptions | None = None, **kwargs: Any) -> ChatCompletion:
        """Answer a conversation: OpenAI-style message dicts, or a `Conversation` parsed already
        (`mmchat.messages.parse_conversation`), which is used as it is.

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
        messages: Messages,
        options: GenerationOptions | None = None,
        *,
        on_media: OnMedia | None = None,
        **kwargs: Any,
    ) -> CompletionStream:
        """Like chat(), but iterate to get text deltas as they are generated. `on_media(ref, segments)`
        hears each media part once it is decoded, before the model sees any (`ask --preview`)."""
        request = split_request(kwargs, generation=options or self.generation, media=self.media)
        conversation = parse_conversation(messages)  # once: the resolver, the digests and the log take the types
        extra = Timings()
        if self._load_time is not None:
            extra.load, self._load_time = self._load_time, None
        t0 = time.perf_counter()
        with self._preparing:  # what was read is taken now: another request may settle the cache before this one ends
            turns = self.inputs.turns(conversation, request.media, on_media)
            read = self.inputs.read_for(conversation) if self.on_completion is not None else {}
        extra.media_decode = time.perf_counter() - t0
        events = self._events(conversation, request, turns)
        done = functools.partial(self._completed, conversation, read) if self.on_completion is not None else None
        return CompletionStream(events, self.capabilities().model_name, extra, on_complete=done)

    def _events(self, conversation: Conversation, request: RequestOptions, turns: list[Turn]) -> Iterator[Event]:
        """The engine's answer; then the pixels of what it now holds encoded are let go (a follow-up
        gives those images as stand-ins). An image let go whose encoding left every cache since is
        read and decoded again, once: the engine says so before its first event."""
        skipped = sum(skipped_frames(turn.segments) for turn in turns)
        try:
            yield from _counting(self.engine.stream(turns, request.generation), skipped)
        except PixelsReleased:
            again = self._again(conversation, request.media)
            yield from _counting(self.engine.stream(again, request.generation), skipped)
        with self._preparing:
            self.inputs.release(self.engine.holds)

    def _again(self, conversation: Conversation, media: MediaOptions) -> list[Turn]:
        with self._preparing:
            self.inputs.drop_released()
            return self.inputs.turns(conversation, media)

    def _completed(self, conversation: Conversation, read: dict[str, Any], completion: ChatCompletion) -> None:
        """The answer, to `on_completion` with the parsed conversation and the sha256 of each medium read."""
        assert self.on_completion is not None
        self.on_completion(
            conversation, completion, {url: self.inputs.sha256(url, found) for url, found in read.items()}
        )

    def save_state(self, *, disk: bool = True) -> bool:
        """Keep the KV state of the conversation answered last (its prompt and the answer), so that
        continuing it later, in this process or (disk) a new one, restores it instead of evaluating it
        again. `ask` with the log on, `chat` and `batch` call it after an answer. False when nothing was
        kept: cache=False, a server, a conversation shorter than a few dozen tokens, a state over half the cap."""
        if not self.load.cache and self._states is None:
            return False
        return self.engine.save_state(disk=disk)

    def prepare(
        self, messages: Messages, media: MediaOptions | None = None, on_media: OnMedia | None = None
    ) -> list[Turn]:
        """Check media against the model, then read and decode every media part (messages parsed once)."""
        with self._preparing:  # `batch --concurrency` prepares from several threads
            return self.inputs.turns(parse_conversation(messages), media or self.media, on_media)

    def media_digests(self, messages: Messages) -> dict[str, str | None]:
        """url -> sha256 of the bytes this runner read for each media part of the latest conversation
        (None: not read here)."""
        return {part.url: self.inputs.digest(part.url) for part in parse_conversation(messages).media()}

    def forget(self) -> None:
        """Keep nothing in memory for a follow-up: the decoded media of the last request go (encoded
        media stay in the disk cache). `batch` calls it after each answer; a conversation never needs to."""
        with self._preparing:
            self.inputs.forget()

    def check_kind(self, kind: Kind | str, url: str) -> None:
        """Refuse a kind of media this model cannot take, before it is read or captured."""
        self.inputs.check_kind(kind, url)  # type: ignore[arg-type]

    def check_media(self, messages: Messages) -> None:
        """Refuse media this model cannot take, before anything is read."""
        self.inputs.check(parse_conversation(messages))

    def prompt(self, messages: Messages) -> str:
        """The prompt a conversation becomes for this model, as text, each medium as `<__media__>`
        (llama.cpp's marker): what the chat template made of it. A server renders its own."""
        text = self.engine.prompt(self.prepare(messages))
        if text is None:
            raise InputError(f"{self.capabilities().model_name} runs on a server, which renders its own prompt")
        return text

    def count_tokens(self, messages: Messages) -> int:
        """The exact prompt size of a conversation, in this model's tokens."""
        conversation = parse_conversation(messages)
        try:
            return self.engine.count_tokens(self.prepare(conversation))
        except PixelsReleased:
            return self.engine.count_tokens(self._again(conversation, self.media))

    def attachment(self, url: str, kind: Kind | None = None) -> Attachment:
        """A file or URL checked and decoded for a coming message (the REPL's /attach)."""
        return self.inputs.attachment(url, kind, self.media)

    def media_of(self, attachment: Attachment) -> list[Image | Audio]:
        """The decoded media of an attachment (from the resolver's cache), for an encode ahead of its turn."""
        return [s for s in self.decoded(attachment) if not isinstance(s, str)]

    def decoded(self, attachment: Attachment) -> list[Segment]:
        """An attachment as its turn will give it to the model (a video with its stamps), from the resolver's cache."""
        return self.inputs.segments(attachment.media_part, self.media)

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
        """Clear a progress display left open by an interrupted step (a bar that has a `close`)."""
        close = getattr(self._progress, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        """Clear any progress display, and free the model (or the server's connections)."""
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


def kv_states(load: LoadOptions, memory: int = 0) -> StateStore | None:
    """Saved KV states: on disk beside the media cache (none with cache=False; a damaged one is logged),
    behind a memory tier of `memory` bytes (`serve`'s, for conversations that alternate); None with neither."""
    from .engine.kvstate import DiskStates, MemoryStates, StateStore

    disk = DiskStates(config.kv_state_dir(), load.kv_cache_size) if load.cache else None
    if not memory and disk is None:
        return None
    return StateStore(
        memory=MemoryStates(memory) if memory else None, disk=disk, min_tokens=config.DEFAULT_KV_STATE_MIN_TOKENS
    )


def _resolved(
    model: str | Path | Target | None = None,
    mmproj: str | Path | None = None,
    *,
    engine: Engine | None = None,
    which: WhichModel | None = None,
    in_situ_quant: str | int | None = None,
    pull: bool = False,
    quiet: bool = False,
    **options: Any,
) -> tuple[Target | None, LoadOptions, MediaOptions]:
    """`Runner.open`'s resolution, the seed's forms' too: keywords checked once into option values, the
    process environment read once (config.environ), the target found (none to find beside an `engine`)."""
    given = split_keywords(options)
    target: Target | None = None
    if isinstance(model, (Local, Server)):
        target = model
    elif engine is None:
        target = find_target(
            model, mmproj, remote=given.remote, environ=config.environ(), which=which,
            in_situ_quant=in_situ_quant, pull=pull, progress=not quiet,
        )  # fmt: skip
    return target, given.load, given.media


#: `Runner`'s own keywords, which `Runner.open` hands on as they are
_OWN = ("generation", "policy", "devices", "stdin", "progress", "on_completion", "states", "engine", "verbose")
