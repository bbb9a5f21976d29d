"""Turns as an OpenAI-compatible server takes them: pure building, no I/O.

mmchat reads and decodes every part itself, so a server sees exactly what a local model would:
images as lossless PNG `data:` URLs (a PNG's greedy answer then matches the local one), audio
as 16-bit WAV at the rate the resolver resampled it to, and video as the frames, `[mm:ss]`
stamps and soundtrack pieces that engine/layout.py laid out. Local paths never leave the machine.
What the server calls each option is its dialect's (engine/dialects.py).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from ..media import Audio, Image
from ..options import GenerationOptions
from . import dialects
from .base import Turn
from .dialects import AudioDialect, Dialect


def png_data_url(image: Image) -> str:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(image.pixels, "RGB").save(buf, format="PNG", compress_level=1)  # lossless at any level
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def wav_base64(audio: Audio) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def part(segment: str | Image | Audio, dialect: AudioDialect) -> dict[str, Any]:
    if isinstance(segment, str):
        return {"type": "text", "text": segment}
    if isinstance(segment, Image):
        return {"type": "image_url", "image_url": {"url": png_data_url(segment)}}
    if dialect == "audio_url":
        return {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + wav_base64(segment)}}
    return {"type": "input_audio", "input_audio": {"data": wav_base64(segment), "format": "wav"}}


def message(turn: Turn, dialect: AudioDialect = "input_audio") -> dict[str, Any]:
    """One turn; text-only content stays a string, which every server and template takes."""
    if all(isinstance(s, str) for s in turn.segments):
        return {"role": turn.role, "content": "".join(turn.segments)}  # type: ignore[arg-type]
    parts: list[dict[str, Any]] = []
    for segment in turn.segments:
        if isinstance(segment, str) and parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += segment  # adjacent text is one part, as it is one run of tokens
        else:
            parts.append(part(segment, dialect))
    return {"role": turn.role, "content": parts}


def messages(turns: Sequence[Turn], dialect: AudioDialect = "input_audio") -> list[dict[str, Any]]:
    return [message(t, dialect) for t in turns]


def body(
    model: str | None,
    turns: Sequence[Turn],
    options: GenerationOptions,
    *,
    dialect: Dialect,
    where: str = "",
    stream: bool = True,
) -> dict[str, Any]:
    """The request in `dialect`'s terms: every sampler the server has, "off" included (a field left
    out is the model's generation_config on vLLM and SGLang), and --schema or --grammar as it takes
    them; a grammar it cannot take is refused unsent (`where` names the server)."""
    out: dict[str, Any] = {
        "messages": messages(turns, dialect.audio),
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "frequency_penalty": options.frequency_penalty,
        "presence_penalty": options.presence_penalty,
        "stream": stream,
    }
    if model:
        out["model"] = model
    if stream and dialect.stream_usage:
        out["stream_options"] = {"include_usage": True}
    if options.seed >= 0:
        out["seed"] = options.seed
    if options.stop:
        out["stop"] = list(options.stop)
    out.update(dialects.sampler_fields(options, dialect))
    out.update(dialects.constraint_fields(options, dialect, where))
    return out


def media_count(turns: Sequence[Turn]) -> tuple[int, int]:
    """(images, audio pieces) in a request."""
    images = sum(isinstance(s, Image) for t in turns for s in t.segments)
    return images, sum(isinstance(s, Audio) for t in turns for s in t.segments)
