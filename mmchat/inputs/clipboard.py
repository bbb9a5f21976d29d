"""The clipboard as a media source (`clipboard:`, `/paste`): an image, files copied in a file manager,
or text. On macOS and Windows it is Pillow's ImageGrab.grabclipboard(); on Linux it is xclip (X11)
or wl-paste (Wayland), asked directly, as Pillow's Linux path does, because Pillow asks only for
image/png and so cannot tell files or text on the clipboard from an empty one.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

from .. import config
from ..errors import MissingTool, SourceError

__all__ = ["Clip", "clipboard_image", "read_clipboard"]

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


def read_clipboard() -> Clip:
    """The clipboard's content; MissingTool when no clipboard tool is installed."""
    if sys.platform in ("darwin", "win32"):
        return _grabclipboard()
    wayland, x11 = config.environ().get("WAYLAND_DISPLAY"), config.environ().get("DISPLAY")
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
