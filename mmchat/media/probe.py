"""How long a recording's sound lasts, from its headers: nothing is decoded.

The resolver asks before decoding, so a three-hour file that could never fit the context is
refused in milliseconds instead of after decoding gigabytes of samples. None means the
headers do not say (or the file is not one these readers know): the decoder then decides.
"""

from __future__ import annotations

from pathlib import Path

from mmchat.media import opened
from mmchat.quiet import captured_stderr

__all__ = ["sound_seconds"]


def sound_seconds(src: bytes | Path) -> float | None:
    """Seconds of sound the file declares (its first audio stream); None when unknown."""
    seconds = _soundfile_seconds(src)
    return seconds if seconds is not None else _pyav_seconds(src)


def _soundfile_seconds(src: bytes | Path) -> float | None:
    import soundfile

    try:
        with captured_stderr():
            info = soundfile.info(opened(src))
    except (RuntimeError, TypeError, ValueError, OSError):  # LibsndfileError: not its format
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return info.frames / info.samplerate


def _pyav_seconds(src: bytes | Path) -> float | None:
    import av

    try:
        container = av.open(opened(src), mode="r")
    except (av.error.FFmpegError, ValueError, OSError, IndexError):
        return None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration:
            return container.duration / av.time_base
    return None
