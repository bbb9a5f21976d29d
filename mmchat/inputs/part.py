"""Where a media part's bytes are: the one parse of a media URL into a `Location`.

`parse_conversation` (messages.py) locates every media part once, and everything after it (the
media policy, the resolver and its cache, the sources, the conversation log, the REPL's dropped
paths) takes that `Location`. A new URL form is one entry in `SCHEMES` (and its reader in
sources.READERS).
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SourceError

if TYPE_CHECKING:
    from ..messages import MediaPart

_PAGE_FRAGMENT = re.compile(r"#page=([0-9][0-9,\- ]*)$")  # Adobe's PDF open parameter, as browsers take it
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")  # 2+ letters before ':': C:\ stays a path

REMOTE = ("http", "https")
#: this machine's devices (inputs/capture.py, inputs/microphone.py): refused unless the caller allows them
DEVICES = ("clipboard", "screen", "mic")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a part's bytes are: the form of its URL, and the file or host it names."""

    text: str  # the URL as written, stripped (a PDF's #page= left out)
    scheme: str  # "path", "stdin", or one of SCHEMES
    label: str  # for messages: the path as given, 'stdin', 'data: URL', or the URL
    path: Path | None = None  # a file on this machine (a path or a file:// URL)
    pages: str | None = None  # a PDF's pages from the URL's #page=N or #page=A-B (not part of `text`)
    url: str = ""  # the URL exactly as the message gives it: the log finds the part's digest under it

    @property
    def host(self) -> str:
        return (split_url(self.text).hostname or "") if self.scheme in REMOTE else ""

    def resolved(self, path: Path) -> Location:
        """The same file, named by the real path a policy checked (read what was checked)."""
        return dataclasses.replace(self, text=str(path), path=path)


def _file_url(text: str) -> Location:
    import urllib.request  # http.client, ssl and email with it: not for every start (`mmchat --help`)

    parts = split_url(text)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"file URL names another host ({parts.netloc}): {text}: use a local path")
    label = urllib.request.url2pathname(parts.path)
    return Location(text, "file", label, _path(label))


def _remote(text: str) -> Location:
    split_url(text)  # a URL it cannot read fails here, once
    return Location(text, _URL_SCHEME.match(text).group(1).lower(), text)  # type: ignore[union-attr]


def _as_is(text: str) -> Location:
    return Location(text, _URL_SCHEME.match(text).group(1).lower(), text)  # type: ignore[union-attr]


#: the URL forms with a scheme, each parsed here and read by sources.READERS[scheme]: a new form is one
#: entry. A plain path is "path", '-' is "stdin"; data: (no '//') is matched on its name and the colon.
SCHEMES: dict[str, Callable[[str], Location]] = {
    "file": _file_url,
    "data": lambda text: Location(text, "data", "data: URL"),
    "http": _remote,
    "https": _remote,
    "clipboard": _as_is,
    "screen": _as_is,
    "mic": _as_is,
}


def locate(url: str) -> Location:
    """The one parse of a media URL; a form mmchat cannot read is a SourceError naming it."""
    return dataclasses.replace(_locate(url.strip(), url), url=url)


def _locate(text: str, url: str) -> Location:
    fragment = _PAGE_FRAGMENT.search(text)
    if fragment and not text.lower().startswith("data:"):
        where = _locate(text[: fragment.start()], text[: fragment.start()])
        return dataclasses.replace(where, pages=fragment.group(1).replace(" ", ""))
    if text == "-":
        return Location(text, "stdin", "stdin")
    match = _URL_SCHEME.match(text)
    scheme = match.group(1).lower() if match else ""
    if match and scheme == "data":
        return SCHEMES["data"](text)
    if not match or (scheme not in SCHEMES and not text[match.end() :].startswith("//")):
        return Location(text, "path", url, _path(text))  # a path, even one with a colon in its name
    if scheme in SCHEMES:
        return SCHEMES[scheme](text)
    raise SourceError(
        f"unsupported URL scheme '{scheme}:' in {text}: use a path, file://, http(s)://, data:, "
        "clipboard:, screen: or mic:"
    )


def split_url(url: str) -> urllib.parse.SplitResult:
    """urlsplit, with a URL it cannot read ("http://[") as one SourceError."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # a port that is not a number fails only when asked for
        return parts
    except ValueError as exc:
        raise SourceError(f"{url} is not a valid URL ({exc}): check it") from None


def _path(text: str) -> Path:
    """A local path; one the OS cannot even name is refused here, before any call would fail on it."""
    if "\x00" in text:
        raise SourceError(f"{text!r} is not a path (it holds a NUL character): check how it was written")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~name for a user who does not exist
        raise SourceError(f"cannot find the home directory in {text}: check the path") from None


def media_part(part: Any, where: str = "part") -> MediaPart | None:
    """The media an OpenAI part dict carries, parsed (messages.parse_part); None for a text part."""
    from .. import messages as msgs

    found = msgs.parse_part(part, where)
    return found if isinstance(found, msgs.MediaPart) else None


def media_parts(messages: Sequence[Any]) -> list[MediaPart]:
    """Every media part of a conversation (raw or parsed: parsed once), in order, each with its place."""
    from .. import messages as msgs

    return msgs.parse_conversation(messages).placed()


def short(url: str) -> str:
    """A URL short enough for a one-line message."""
    return url if len(url) <= 60 else url[:40] + "…" + url[-12:]
