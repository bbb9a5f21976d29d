"""Sound that cannot fit the context is refused from its length, before it is decoded.

Decoding three hours of audio takes half a minute and gigabytes of samples, only for the
engine to say the prompt is too long. The headers say how long a recording is
(media/probe.py) and the engine says what a second of sound costs (`Capabilities.audio_tokens`,
learned from the projector), so the resolver can say the same thing in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

from ..engine.base import Capabilities
from ..errors import ContextOverflow

__all__ = ["check_sound"]

#: no projector spends more tokens per second of sound than this; below it, nothing is asked
_MOST_TOKENS_PER_SECOND = 100


def check_sound(
    caps: Capabilities,
    seconds_of: Callable[[], float | None],
    label: str,
    start: float | None,
    end: float | None,
    *,
    soundtrack: bool = False,
) -> None:
    """Raise ContextOverflow when [start, end) of the recording cannot fit the context; `seconds_of`
    reads its length from the headers, asked only when the engine can price sound."""
    if caps.audio_tokens is None or (seconds := seconds_of()) is None:
        return
    length = max(0.0, (seconds if end is None else min(end, seconds)) - (start or 0.0))
    if length * _MOST_TOKENS_PER_SECOND < caps.n_ctx:
        return  # surely fits: no need to ask the engine
    tokens = caps.audio_tokens(length)
    if tokens < caps.n_ctx:
        return
    fits = length * caps.n_ctx / tokens
    what = f"the soundtrack of {label}" if soundtrack else label
    more = ", leave the sound out with --no-video-audio" if soundtrack else ""
    raise ContextOverflow(
        f"{what} is {clock(length)} of sound, at least {tokens} tokens for {caps.model_name}, but the context "
        f"holds {caps.n_ctx} (about {clock(fits)} of sound): give a part of it with --start/--end "
        f"(e.g. --start 0 --end {_time_arg(fits * 0.9)}){more}, or raise --ctx-size"
    )


def _time_arg(seconds: float) -> str:
    """A time as --end takes it."""
    return clock(seconds) if seconds >= 60 else f"{max(1, int(seconds))}"


def clock(seconds: float) -> str:
    """1:02:03, 4:05 or 7.5 s."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
