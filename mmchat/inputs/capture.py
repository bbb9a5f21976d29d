"""The clipboard and the screen as media sources (`clipboard:`, `screen:`, `screen:N`); the
microphone (`mic:`) is recorded in microphone.py and kept here too.

The screen is read with mss (XGetImage on X11, CoreGraphics, GDI: no external tool). The
clipboard on macOS and Windows is Pillow's ImageGrab.grabclipboard(); on Linux it is xclip
(X11) or wl-paste (Wayland), asked directly, as Pillow's Linux path does, because Pillow asks
only for image/png and so cannot tell files or text on the clipboard from an empty one. What is
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
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import config
from ..errors import InputError, MissingTool, SourceError
from ..media import with_article
from .part import Location

__all__ = ["Clip", "grab_screen", "keep", "read_clipboard", "save_capture"]

_TOOL_TIMEOUT = 5.0  # seconds xclip or wl-paste may take: a clipboard owner that hangs is not waited for
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")
_FILE_TYPES = ("text/uri-list", "x-special/gnome-copied-files")
_TEXT_TYPES = ("text/plain;charset=utf-8", "UTF8_STRING", "text/plain", "STRING", "TEXT")


@dataclasses.dataclass(frozen=True)
class Clip:
    """What the clipboard holds: an image (its bytes), files (their paths), text, or nothing."""

    image: bytes | None = None
    files: tuple[str, ...] = ()
    text: str | None = None


# -- the clipboard ------------------------------------------------------------------


def read_clipboard() -> Clip:
    """The clipboard's content; MissingTool when no clipboard tool is installed."""
    if sys.platform in ("darwin", "win32"):
        return _grabclipboard()
    wayland, x11 = os.environ.get("WAYLAND_DISPLAY"), os.environ.get("DISPLAY")
    if not (wayland or x11):
        raise SourceError(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset): the clipboard needs a graphical "
            "session; save the image to a file and attach that"
        )
    if wayland and shutil.which("wl-paste"):
        listing, get = ["wl-paste", "--list-types"], lambda t: ["wl-paste", "--no-newline", "--type", t]
    elif x11 and shutil.which("xclip"):
        listing, get = (
            ["xclip", "-selection", "clipboard", "-t", "TARGETS", "-o"],
            lambda t: ["xclip", "-selection", "clipboard", "-t", t, "-o"],
        )
    else:
        package = "wl-clipboard" if wayland else "xclip"
        raise MissingTool(f"reading the clipboard needs {package}: install it (e.g. sudo apt install {package})")
    listed = _run(listing)
    if listed is None:
        return Clip()
    types = [t.strip() for t in listed.decode("utf-8", "replace").splitlines() if t.strip()]
    for wanted in _IMAGE_TYPES + tuple(t for t in types if t.startswith("image/")):
        if wanted in types and (data := _run(get(wanted))):
            return Clip(image=data)
    for wanted in _FILE_TYPES:
        if wanted in types and (data := _run(get(wanted))):
            files = _file_list(data.decode("utf-8", "replace"))
            if files:
                return Clip(files=files)
    for wanted in _TEXT_TYPES:
        if wanted in types and (data := _run(get(wanted))) is not None:
            return Clip(text=data.decode("utf-8", "replace")) if data else Clip()
    return Clip()


def _run(args: list[str]) -> bytes | None:
    """A clipboard tool's output; None when it says the clipboard is empty or holds no such type."""
    try:
        done = subprocess.run(args, capture_output=True, timeout=_TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceError(
            f"{args[0]} did not answer within {_TOOL_TIMEOUT:g} s: the application that owns "
            "the clipboard is not responding; copy again"
        ) from None
    except OSError as e:
        raise MissingTool(f"cannot run {args[0]} ({e.strerror or e}): reinstall it") from None
    return done.stdout if done.returncode == 0 else None


def _file_list(text: str) -> tuple[str, ...]:
    """file:// URLs, one a line (text/uri-list; GNOME's list starts with 'copy' or 'cut')."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("file://"):
            out.append(urllib.request.url2pathname(urllib.parse.urlsplit(line).path))
    return tuple(out)


def _grabclipboard() -> Clip:
    from PIL import ImageGrab

    try:
        found = ImageGrab.grabclipboard()
    except (OSError, NotImplementedError) as e:
        raise SourceError(f"cannot read the clipboard ({e}): copy again") from None
    if isinstance(found, list):
        return Clip(files=tuple(found))
    if found is None:
        return Clip()
    buffer = io.BytesIO()
    found.save(buffer, "PNG", compress_level=1)
    return Clip(image=buffer.getvalue())


def clipboard_image(clip: Clip) -> bytes:
    """The image a `clipboard:` part names; a clear error for anything else on the clipboard."""
    if clip.image is not None:
        return clip.image
    if clip.files:
        raise SourceError(
            f"the clipboard holds {len(clip.files)} file(s), not an image: attach them with /paste, or give their paths"
        )
    if clip.text is not None:
        raise SourceError("the clipboard holds text, not an image: copy an image, or paste the text into the prompt")
    raise SourceError("the clipboard is empty: copy an image (or files) first")


# -- the screen ---------------------------------------------------------------------


def grab_screen(monitor: int | None = None) -> bytes:
    """The whole screen (all monitors), or monitor N (1-based), as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(grab_pixels(monitor)).save(buffer, "PNG", compress_level=1)  # fast
    return buffer.getvalue()


def grab_pixels(monitor: int | None = None) -> Any:
    """The whole screen (all monitors), or monitor N (1-based), as RGB pixels (height, width, 3)."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        where = " (Wayland without XWayland cannot be read)" if os.environ.get("WAYLAND_DISPLAY") else ""
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
    from ..errors import disk_full

    folder = config.user_dir() / "captures"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{what}-{stamp}-{hashlib.sha256(data).hexdigest()[:8]}.{suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise disk_full(e, path) or SourceError(
            f"cannot keep the capture in {folder} ({e.strerror or e}): check MMCHAT_HOME"
        ) from None
    return path


#: captures whose file is still being written, by path: the resolver takes their pixels from here
#: (encoding a screen as PNG was most of a screen: turn), and a reader of the file waits for it
_FRESH: dict[str, tuple[Any, threading.Thread]] = {}


def keep_pixels(pixels: Any, what: str) -> Path:
    """Captured pixels kept as a PNG under MMCHAT_HOME/captures, written in the background: the
    path (named by time and the pixels' hash) at once, the pixels meanwhile from `fresh`."""
    from ..errors import disk_full

    folder = config.user_dir() / "captures"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{what}-{stamp}-{hashlib.sha256(pixels.data).hexdigest()[:8]}.png"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_full(e, path) or SourceError(
            f"cannot keep the capture in {folder} ({e.strerror or e}): check MMCHAT_HOME"
        ) from None

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


def keep(url: str, warn: Callable[[str], None] | None = None) -> list[str]:
    """What a message should name for `url`: a device URL captured now and kept as a file (a file
    list on the clipboard: those files); any other URL as it is. `mic:` without a length records
    until Enter on the environment's stdin, a terminal; `warn` hears of a silent recording."""
    from ..env import current
    from .part import DEVICES, locate

    where = locate(url)
    if where.scheme not in DEVICES:
        return [url]
    if where.scheme == "mic":
        from .microphone import record

        env = current()
        terminal = env.isatty("stdin")
        sound = record(where, warn or env.warn, env.stdin, env.stderr if env.isatty("stderr") else None, terminal)
        return [str(save_capture(sound.wav(), "mic", "wav"))]
    if where.scheme == "screen":
        return [str(keep_pixels(grab_pixels(screen_number(where)), "screen"))]
    clip = read_clipboard()
    if clip.files:
        return list(clip.files)
    return [str(save_capture(clipboard_image(clip), "clipboard", "png"))]


def captured(messages: list[dict], check=None, warn: Callable[[str], None] | None = None) -> list[dict]:
    """The messages with every device part (clipboard:, screen:, mic:) captured now and named by
    the kept file; files copied on the clipboard become one part each. `check(kind, url)` runs
    first, so a model that cannot take the kind refuses before anything is captured (or recorded)."""
    from .. import messages as msgs
    from .claims import told
    from .part import DEVICES, locate, media_part

    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or not any(
            (found := media_part(p)) is not None and locate(found.url).scheme in DEVICES for p in content
        ):
            out.append(message)
            continue
        parts = []
        for part in content:
            found = media_part(part)
            if found is None or locate(found.url).scheme not in DEVICES:
                parts.append(part)
                continue
            scheme = locate(found.url).scheme
            kind = {"mic": "audio", "screen": "image"}.get(scheme, "file") if found.kind == "file" else found.kind
            if scheme == "mic" and kind != "audio":
                raise InputError(
                    f"{found.url} records sound, not {with_article(kind)}: give it as audio (-a {found.url})"
                )
            if check is not None:
                check(kind, found.url)
            options = {k: v for k, v in part[part["type"]].items() if k != "url"}
            parts += [
                msgs.media_part(told(url) if found.kind == "file" else found.kind, url, **options)
                for url in keep(found.url, warn)
            ]
        out.append({**message, "content": parts})
    return out
