"""Runner: the Python API. Messages in, a chat completion (or a stream of text) out.

Every entry point (CLI, REPL, scripts) goes through here: validate the messages, refuse
media the model cannot take before reading a byte, read and decode media, hand the engine
turns of text and decoded pixels/samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from . import config
from . import messages as msgs
from .engine.base import Capabilities, Engine, Progress, SamplingOptions, Segment, Timings, Turn
from .errors import InputError, ModelNotFound, UnsupportedMedia
from .media import Audio, Image
from .results import ChatCompletion, CompletionStream


def find_mmproj(model: Path) -> Path | None:
    """The projector that sits next to a model, when there is exactly one."""
    found = sorted(model.parent.glob("mmproj*.gguf"))
    return found[0] if len(found) == 1 else None


class Runner:
    """A loaded model you can chat with.

    >>> runner = Runner(model="model.gguf", mmproj="mmproj.gguf")
    >>> reply = runner.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
    >>> reply.choices[0].message.content

    `model` is a GGUF path, a registry name (`mmchat models`) or hf:owner/repo[:QUANT];
    with pull=True a named model that is not downloaded yet is fetched first.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        mmproj: str | Path | None = None,
        *,
        n_ctx: int = config.DEFAULT_N_CTX,
        n_gpu_layers: int | None = None,
        threads: int | None = None,
        chat_template: str | None = None,
        image_max_side: int | None = config.DEFAULT_IMAGE_MAX_SIDE,
        image_max_tokens: int | None = None,
        video_fps: float = config.DEFAULT_VIDEO_FPS,
        video_max_frames: int = config.DEFAULT_VIDEO_MAX_FRAMES,
        video_audio: bool = True,
        video_max_side: int | None = config.DEFAULT_VIDEO_FRAME_MAX_SIDE,
        verbose: bool = False,
        notice: Callable[[str], None] | None = None,
        engine: Engine | None = None,
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        pull: bool = False,
    ):
        self.image_max_side = image_max_side
        self.video_defaults = {"fps": video_fps, "max_frames": video_max_frames, "audio": video_audio}
        self.video_max_side = video_max_side
        self._stdin = stdin
        self._progress = progress
        self._media_cache: OrderedDict[tuple, list[Segment]] = OrderedDict()
        self._notice = notice or (lambda m: print(f"mmchat: {m}", file=sys.stderr))
        t0 = time.perf_counter()
        if engine is None:
            model_path, mmproj_path = self._resolve(model, mmproj, pull)
            from .engine.llamacpp import LlamaCppEngine

            engine = LlamaCppEngine(
                model_path, mmproj_path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, threads=threads,
                chat_template=_read_template(chat_template), image_max_tokens=image_max_tokens,
                verbose=verbose, notice=self._notice, progress=progress,
            )
        self.engine = engine
        self.load_time = time.perf_counter() - t0
        self._loaded = False  # the first request reports the load time

    @staticmethod
    def _resolve(model: str | Path | None, mmproj: str | Path | None, pull: bool) -> tuple[Path, Path | None]:
        if model is not None and Path(model).expanduser().is_file():
            model_path, registry_mmproj = Path(model).expanduser(), None
        else:
            from . import registry

            resolved = registry.resolve(model, pull=pull, progress=pull)
            model_path, registry_mmproj = resolved.model, resolved.mmproj
        if mmproj is not None:
            mmproj_path = Path(mmproj).expanduser()
            if not mmproj_path.is_file():
                raise ModelNotFound(f"projector file not found: {mmproj}: give the path to an mmproj-*.gguf")
        else:
            mmproj_path = registry_mmproj or find_mmproj(model_path)
        return model_path, mmproj_path

    # -- public API ------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return self.engine.capabilities()

    def chat(self, messages: Sequence[dict[str, Any]], **options: Any) -> ChatCompletion:
        """Answer a conversation.

        Options: those of `SamplingOptions` (max_tokens, temperature, top_k, top_p, min_p,
        repeat_penalty, seed, stop, grammar), and video defaults for this request
        (video_fps, video_max_frames, video_audio) that a video part's own keys override.
        """
        stream = self.stream(messages, **options)
        for _ in stream:
            pass
        assert stream.completion is not None
        return stream.completion

    def stream(self, messages: Sequence[dict[str, Any]], **options: Any) -> CompletionStream:
        """Like chat(), but iterate to get text deltas as they are generated."""
        video = dict(self.video_defaults)
        for key in ("fps", "max_frames", "audio"):
            value = options.pop(f"video_{key}", None)
            if value is not None:
                video[key] = value
        sampling = sampling_options(**options)
        extra = Timings()
        if not self._loaded:
            extra.load, self._loaded = self.load_time, True
        t0 = time.perf_counter()
        turns = self.prepare(messages, video_defaults=video)
        extra.media_decode = time.perf_counter() - t0
        return CompletionStream(self.engine.stream(turns, sampling), self.capabilities().model_name, extra)

    def prepare(self, messages: Sequence[dict[str, Any]], *, video_defaults: dict[str, Any] | None = None) -> list[Turn]:
        """Validate, check media against the model, then read and decode every media part."""
        checked = msgs.validate_messages(messages)
        self.check_media(checked)
        stdin_used = False
        turns = []
        for i, message in enumerate(checked):
            content = message["content"]
            if isinstance(content, str):
                turns.append(Turn(message["role"], (content,)))
                continue
            segments: list[Segment] = []
            for j, part in enumerate(content):
                ref = msgs.part_media(part, f"messages[{i}].content[{j}]")
                if ref is None:
                    segments.append(part["text"])
                    continue
                if ref.url == "-":
                    if stdin_used:
                        raise InputError("only one media part can read standard input ('-')")
                    stdin_used = True
                if ref.kind == "video":
                    ref = dataclasses.replace(ref, options={**(video_defaults or self.video_defaults), **ref.options})
                segments.extend(self.load_media(ref))
            turns.append(Turn(message["role"], tuple(segments)))
        return turns

    def check_media(self, messages: Sequence[dict[str, Any]]) -> None:
        caps = self.capabilities()
        for ref in msgs.iter_media(messages):
            if ref.kind not in caps.kinds:
                raise UnsupportedMedia(
                    f"{caps.model_name} takes {caps.describe()}, not {ref.kind} ({_short(ref.url)}): "
                    f"use a model whose mmproj takes {ref.kind}"
                )

    def load_media(self, ref: msgs.MediaRef) -> list[Segment]:
        """Read and decode one media part into the segments the engine gets.

        Decoded media are remembered (a file by its path, size and mtime; a URL by its
        text), so a conversation sent again with one more turn does not decode them again.
        """
        key = _media_key(ref)
        cached = self._media_cache.get(key) if key else None
        if cached is not None:
            self._media_cache.move_to_end(key)
            return cached
        segments = self._load_media(ref)
        if key:
            self._media_cache[key] = segments
            while len(self._media_cache) > 1 and sum(map(_nbytes, self._media_cache.values())) > MEDIA_CACHE_BYTES:
                self._media_cache.popitem(last=False)
        return segments

    def _load_media(self, ref: msgs.MediaRef) -> list[Segment]:
        from .sources import local_source, read_source

        if ref.kind == "video":
            source = local_source(ref.url)  # a long video is decoded from disk, not read into memory
            if source is not None:
                _check_kind(source, "video")
                return self._decode_video(source.path, source.label, ref.options)
        report = self._progress
        on_bytes = (lambda done, total: report(f"downloading {_short(ref.url)}", done, total)) if report else None
        source = read_source(ref.url, stdin=self._stdin, progress=on_bytes)
        _check_kind(source, ref.kind)
        if ref.kind == "image":
            return [self._decode_image(source.data, source.label, ref.options)]
        if ref.kind == "audio":
            return [self._decode_audio(source.data, source.label)]
        return self._decode_video(source.data, source.label, ref.options)

    def _decode_video(self, src: bytes | Path, label: str, options: dict[str, Any]) -> list[Segment]:
        from .media.video import VideoOptions, decode_video, video_segments

        unknown = sorted(set(options) - VIDEO_KEYS)
        if unknown:
            raise InputError(f"unknown video option {unknown[0]!r} for {label}; known: {', '.join(sorted(VIDEO_KEYS))}")
        opts = VideoOptions.from_dict(options)
        caps = self.capabilities()
        rate = caps.audio_sample_rate if caps.audio and opts.audio else None
        report = self._progress
        on_frame = (lambda done, total: report(f"decoding {_short(label)}", done, total)) if report else None
        video = decode_video(src, label=label, options=opts, max_side=options.get("max_side", self.video_max_side),
                             audio_rate=rate, progress=on_frame)
        return video_segments(video, pairs=caps.frame_pairs)

    def _decode_image(self, data: bytes, label: str, options: dict[str, Any]) -> Image:
        from .media.image import decode_image

        max_side = options.get("max_side", self.image_max_side)
        return decode_image(data, label=label, max_side=max_side)

    def _decode_audio(self, data: bytes, label: str) -> Audio:
        from .media.audio import decode_audio

        rate = self.capabilities().audio_sample_rate or 16000
        return decode_audio(data, label=label, sample_rate=rate)

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


MEDIA_CACHE_BYTES = config.DEFAULT_MEDIA_CACHE_BYTES
VIDEO_KEYS = {"fps", "max_frames", "start", "end", "audio", "max_side"}


def _media_key(ref: msgs.MediaRef) -> tuple | None:
    """What identifies decoded media: a local file's path, size and mtime; a URL's text."""
    from .sources import local_path

    if ref.url.strip() == "-":
        return None
    options = tuple(sorted((k, repr(v)) for k, v in ref.options.items()))
    local = local_path(ref.url)
    if local is None:  # data: and http(s): the URL names the content
        return (ref.kind, hashlib.blake2b(ref.url.encode(), digest_size=16).hexdigest(), options)
    try:
        st = os.stat(local[1])
    except OSError:
        return None  # the read itself reports the problem
    return (ref.kind, str(local[1].resolve()), st.st_size, st.st_mtime_ns, options)


def sampling_options(**options: Any) -> SamplingOptions:
    """Keyword options -> SamplingOptions, with a clear error for a misspelt name."""
    fields = SamplingOptions.__dataclass_fields__
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}; known: {', '.join(fields)}")
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(given.get("stop"), str):
        given["stop"] = (given["stop"],)
    if "stop" in given:
        given["stop"] = tuple(given["stop"])
    if given.get("max_tokens", 1) < 1:
        raise InputError("max_tokens must be at least 1")
    return SamplingOptions(**given)


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


def _nbytes(segments: list[Segment]) -> int:
    return sum(s.pixels.nbytes if isinstance(s, Image) else s.samples.nbytes if isinstance(s, Audio) else 0
               for s in segments)


def _check_kind(source, kind: str) -> None:
    """Bytes of another kind than asked for are refused, except where one holds the other:
    a video's soundtrack as audio, an animated GIF/WebP or an audio-only file as video
    (the video decoder then says what it lacks)."""
    found = source.kind
    if found is None or found == kind or (kind, found) in {("audio", "video"), ("video", "audio")}:
        return
    if kind == "video" and found == "image" and source.mime in ("image/gif", "image/webp"):
        return
    raise InputError(f"{source.label} is {_article(found)}, not {_article(kind)}: pass it as {found}")


def _short(url: str) -> str:
    return url if len(url) <= 60 else url[:40] + "…" + url[-12:]


def _article(kind: str) -> str:
    return {"image": "an image", "audio": "audio", "video": "a video"}.get(kind, kind)
