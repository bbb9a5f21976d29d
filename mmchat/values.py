"""Values as users write them, and the rules they are checked by: numbers in ranges, sizes
("2G"), times ("1:30"), page ranges ("2-5"). Options (options.py) and per-part keys use these,
so a value is read and refused in the same words wherever it is given. Pure, and light: `mmchat
--help` imports it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from .errors import InputError


@dataclasses.dataclass(frozen=True)
class Rule:
    """What values an option takes, said the way an error message needs it."""

    text: str  # "a number from 0 to 1 (1 is off)"
    ok: Callable[[Any], bool]


def number(low: float | None = None, high: float | None = None, *, above: float | None = None) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (low is None or v >= low) and (high is None or v <= high) and (above is None or v > above)

    return ok


def whole(low: int, *, optional: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if v is None:
            return optional
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    return ok


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


PAGES = re.compile(r"[1-9]\d*(?:-[1-9]\d*)?(?:,[1-9]\d*(?:-[1-9]\d*)?)*")  # 3 | 2-5 | 1,4-6


def check(name: str, value: Any, rule: Rule | None, label: str, shown: str | None = None) -> None:
    """Raise one clear InputError when `value` breaks `rule`; `label` says how the user wrote the name."""
    if rule is not None and not rule.ok(value):
        raise InputError(f"{label}{shown if shown is not None else repr(value)} is not valid: give {rule.text}")


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", re.IGNORECASE)


def parse_size(value: Any) -> int | None:
    """Bytes from 1073741824, "2G", "500M", "1.5GiB"; None when it is none of those."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))


_TIME = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)")


def parse_segment(start: Any, end: Any, what: str) -> tuple[float | None, float | None]:
    """A part's start and end (seconds or mm:ss, each optional) as seconds; the end after the start."""
    start, end = (None if v is None else parse_time(v) for v in (start, end))
    if end is not None and end <= (start or 0.0):
        raise InputError(f"{what} end ({end:g} s) must come after its start ({start or 0:g} s)")
    return start, end


def parse_time(value: str | float) -> float:
    """Seconds from 90, "90", "1:30" or "01:02:03.5"."""
    if not isinstance(value, str):
        seconds = as_number(value, "time")
        if seconds < 0:
            raise InputError(f"a video time cannot be negative ({value!r}): count seconds from the start")
        return seconds
    match = _TIME.fullmatch(value.strip())
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups()) if match else (0, 0, 0)
    if match is None or (match.group(2) and seconds >= 60) or (match.group(1) and minutes >= 60):
        raise InputError(f"cannot read {value!r} as a time: use seconds (90), mm:ss (1:30) or hh:mm:ss")
    return hours * 3600 + minutes * 60 + seconds


def as_number(value: Any, what: str) -> float:
    """A number from a JSON body, which may carry it as text ("2")."""
    try:
        if not isinstance(value, bool) and math.isfinite(number := float(value)):
            return number
    except (TypeError, ValueError):
        pass
    raise InputError(f"video {what} must be a number, not {value!r}")
