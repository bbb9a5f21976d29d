"""The clipboard and the screen as media sources (`clipboard:`, `screen:`, `screen:N`); the
microphone (`mic:`) is recorded in microphone.py and kept here too.

The screen is read with mss (XGetImage on X11, CoreGraphics, GDI: no external tool); the
clipboard in clipboard.py. Each device has one reader (`CAPTURES`), which a Runner's part
(sources.READERS) and the file the CLI keeps (`keep`, `captured`) both go through. What is
captured is kept as a PNG under MMCHAT_HOME/captures (`keep`), so a message, the conversation
log and `--continue` refer to a file with its sha256, like any attachment; nothing is sent
anywhere but to the model.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import config
from .. import messages as msgs
from ..errors import InputError, SourceError
from ..media import with_article
from . import part as part_location
from .clipboard import Clip, clipboard_image, read_clipboard
from .part import DEVICES, Location

__all__ = [
    "CAPTURES",
    "Captured",
    "Clip",
    "Terminal",
    "capture",
    "captured",
    "clipboard_image",
    "grab_screen",
    "keep",
    "read_clipboard",
    "save_capture",
]


# -- the screen ---------------------------------------------------------------------


def grab_screen(monitor: int | None = None) -> bytes:
    """The whole screen (all monitors), or monitor N (1-based), as PNG bytes."""
    return Captured(pixels=grab_pixels(monitor)).encoded()


def grab_pixels(monitor: int | None = None) -> Any:
    """The whole screen (all monitors), or monitor N (1-based), as RGB pixels (height, width, 3)."""
    environ = config.environ()
    if sys.platform.startswith("linux") and not environ.get("DISPLAY"):
        where = " (Wayland without XWayland cannot be read)" if environ.get("WAYLAND_DISPLAY") else ""
        raise SourceError(
            f"no display to capture{where}: run mmchat in a graphical session, or take the "
            "screenshot with your desktop's tool and attach the file"
        )
    import mss

    try:
        with (getattr(mss, "MSS", None) or mss.mss)() as screens:  # mss 10 renamed the factory
            monitors = screens.monitors  # [all of them, the first, the second, ...]
            if monitor is not None and not 1 <= monitor < len(monitors):
                raise SourceError(
                    f"screen:{monitor}: there {'is' if len(monitors) == 2 else 'are'} "
                    f"{len(monitors) - 1} monitor(s): choose screen:1 to screen:{len(monitors) - 1}"
                )
            shot = screens.grab(monitors[monitor or 0])
    except mss.exception.ScreenShotError as e:
        raise SourceError(
            f"cannot capture the screen ({e}): check DISPLAY and that the X server lets you read it"
        ) from None
    import numpy as np

    bgra = np.frombuffer(shot.bgra, dtype=np.uint8).reshape(shot.size[1], shot.size[0], 4)
    return np.ascontiguousarray(bgra[:, :, 2::-1])


def screen_number(where: Location) -> int | None:
    """screen: -> None (all), screen:2 -> 2."""
    rest = where.text.split(":", 1)[1].strip().lstrip("/")
    if not rest:
        return None
    if not rest.isdigit() or int(rest) < 1:
        raise SourceError(f"{where.text}: name a monitor by its number, e.g. screen:1 (screen: is all of them)")
    return int(rest)


# -- kept under MMCHAT_HOME ---------------------------------------------------------


def save_capture(data: bytes, what: str, suffix: str) -> Path:
    """Write captured media under MMCHAT_HOME/captures, named by time and content; its path."""
    path = _capture_path(what, data, suffix)
    try:
        path.write_bytes(data)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise _not_kept(e, path) from None
    return path


def _capture_path(what: str, content: Any, suffix: str) -> Path:
    """Where a capture is kept (its folder made): MMCHAT_HOME/captures, named by time and content."""
    folder = config.user_dir() / "captures"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{what}-{stamp}-{hashlib.sha256(content).hexdigest()[:8]}.{suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _not_kept(e, path) from None
    return path


def _not_kept(error: OSError, path: Path) -> Exception:
    from ..errors import disk_full

    return disk_full(error, path) or SourceError(
        f"cannot keep the capture in {path.parent} ({error.strerror or error}): check MMCHAT_HOME"
    )


#: captures whose file is still being written, by path: the resolver takes their pixels from here
#: (encoding a screen as PNG was most of a screen: turn), and a reader of the file waits for it
_FRESH: dict[str, tuple[Any, threading.Thread]] = {}


def keep_pixels(pixels: Any, what: str) -> Path:
    """Captured pixels kept as a PNG under MMCHAT_HOME/captures, written in the background: the
    path (named by time and the pixels' hash) at once, the pixels meanwhile from `fresh`."""
    path = _capture_path(what, pixels.data, "png")

    def write() -> None:
        from PIL import Image

        partial = path.with_suffix(".partial")
        try:
            Image.fromarray(pixels).save(partial, "PNG", compress_level=1)
            os.replace(partial, path)  # a reader never sees half a file
        except OSError:
            partial.unlink(missing_ok=True)  # a reader then says the file is missing

    if not _FRESH:
        atexit.register(_write_all)  # a capture no turn took (an error, Ctrl-C) is still kept
    _FRESH[str(path)] = (pixels, threading.Thread(target=write, name="mmchat keep capture"))
    return path


def _write_all() -> None:
    for path in list(_FRESH):
        written(path)


def fresh(path: Path | str) -> Any:
    """The pixels of a capture whose file is not written yet (None for any other file); its file is
    written from now on, in the background, while the model works (not while the turn is read)."""
    found = _FRESH.get(str(path))
    if found is None:
        return None
    _start(found[1])
    return found[0]


def written(path: Path | str) -> None:
    """Wait until a capture's file is on disk (nothing to wait for with any other file)."""
    found = _FRESH.get(str(path))
    if found is not None:
        _start(found[1])
        found[1].join()
        _FRESH.pop(str(path), None)


def _start(writer: threading.Thread) -> None:
    with _STARTING:
        if writer.ident is None:
            writer.start()


_STARTING = threading.Lock()


# -- the one reader of this machine's devices ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Terminal:
    """Where `mic:` without a length waits for Enter (a terminal's stdin) and draws its meter (or None)."""

    stdin: Any
    meter: Any = None
    interactive: bool = True


@dataclasses.dataclass(frozen=True)
class Captured:
    """What a device gave: encoded bytes (an image, a WAV), a screen's pixels, or files copied on the clipboard."""

    data: bytes | None = None
    pixels: Any = None
    files: tuple[str, ...] = ()
    mime: str = "image/png"

    def encoded(self) -> bytes:
        if self.data is not None:
            return self.data
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.pixels).save(buffer, "PNG", compress_level=1)  # fast
        return buffer.getvalue()


def _clipboard(where: Location, terminal: Terminal | None) -> Captured:
    clip = read_clipboard()
    return Captured(files=clip.files) if clip.files else Captured(clipboard_image(clip))


def _screen(where: Location, terminal: Terminal | None) -> Captured:
    return Captured(pixels=grab_pixels(screen_number(where)))


def _mic(where: Location, terminal: Terminal | None) -> Captured:
    from .microphone import record

    at = (terminal.stdin, terminal.meter, terminal.interactive) if terminal is not None else ()  # none: give a length
    return Captured(record(where, *at).wav(), mime="audio/wav")


#: how each device is read, for a Runner's part (sources.READERS) and for the file the CLI keeps alike
CAPTURES: dict[str, Callable[[Location, Terminal | None], Captured]] = {
    "clipboard": _clipboard,
    "screen": _screen,
    "mic": _mic,
}


def capture(where: Location, terminal: Terminal | None = None) -> Captured:
    """What a device URL names, taken now (a silent recording is a warning on the "mmchat.inputs" log)."""
    return CAPTURES[where.scheme](where, terminal)


def keep(url: str | Location, terminal: Terminal | None = None) -> list[str]:
    """What a message should name for `url`: a device URL captured now and kept as a file (a file
    list on the clipboard: those files); any other URL as it is. `mic:` without a length records
    until Enter on the `terminal`'s stdin."""
    where = url if isinstance(url, Location) else part_location.locate(url)
    if where.scheme not in DEVICES:
        return [where.url]
    got = capture(where, terminal)
    if got.files:
        return list(got.files)
    if got.pixels is not None:
        return [str(keep_pixels(got.pixels, where.scheme))]
    return [str(save_capture(got.encoded(), where.scheme, "wav" if got.mime == "audio/wav" else "png"))]


def captured(
    conversation: msgs.Conversation,
    check: Callable[[msgs.PartKind, str], None] | None = None,
    terminal: Terminal | None = None,
) -> msgs.Conversation:
    """The conversation with every device part (clipboard:, screen:, mic:) captured now and named by
    the kept file; files copied on the clipboard become one part each. `check(kind, url)` runs
    first, so a model that cannot take the kind refuses before anything is captured (or recorded)."""
    if not any(p.location.scheme in DEVICES for p in conversation.media()):
        return conversation
    return msgs.Conversation(
        msgs.Message(m.role, tuple(_kept_parts(m, check, terminal)), m.plain)
        if any(isinstance(p, msgs.MediaPart) and p.location.scheme in DEVICES for p in m.parts)
        else m
        for m in conversation
    )


def _kept_parts(
    message: msgs.Message, check: Callable[[msgs.PartKind, str], None] | None, terminal: Terminal | None
) -> Iterator[msgs.TextPart | msgs.MediaPart]:
    from .claims import told

    for part in message.parts:
        if not isinstance(part, msgs.MediaPart) or part.location.scheme not in DEVICES:
            yield part
            continue
        scheme = part.location.scheme
        kind = {"mic": "audio", "screen": "image"}.get(scheme, "file") if part.kind == "file" else part.kind
        if scheme == "mic" and kind != "audio":
            raise InputError(f"{part.url} records sound, not {with_article(kind)}: give it as audio (-a {part.url})")
        if check is not None:
            check(kind, part.url)  # type: ignore[arg-type]
        for path in keep(part.location, terminal):
            where = part_location.locate(path)
            yield msgs.MediaPart(
                told(where) if part.kind == "file" else part.kind, where, part.options, where=part.where
            )
