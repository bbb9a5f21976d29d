"""A media part read once: its kind, where its bytes are (the URL parsed), and its own options.

Everything that asks "what is this part's URL?" takes the `Location` that `locate()` gives: the
media policy, the resolver and its cache, the sources, the conversation log and the REPL's
dropped paths. A new URL form is one entry in `SCHEMES` (and its reader in sources.py).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import messages as msgs
from ..errors import SourceError

_PAGE_FRAGMENT = re.compile(r"#page=([0-9][0-9,\- ]*)$")  # Adobe's PDF open parameter, as browsers take it
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")  # 2+ letters before ':': C:\ stays a path

#: URL forms with a scheme, each read by sources.READERS[scheme]. A plain path is "path", '-' is
#: "stdin". (Schemes written without '//', such as data:, are matched on the name and the colon.)
SCHEMES = ("file", "data", "http", "https", "clipboard", "screen", "mic")
REMOTE = ("http", "https")
#: this machine's devices (inputs/capture.py, inputs/microphone.py): refused unless the caller allows them
DEVICES = ("clipboard", "screen", "mic")


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a part's bytes are: the form of its URL, and the file or host it names."""

    text: str  # the URL as written, stripped
    scheme: str  # "path", "stdin", or one of SCHEMES
    label: str  # for messages: the path as given, 'stdin', 'data: URL', or the URL
    path: Path | None = None  # a file on this machine (a path or a file:// URL)
    pages: str | None = None  # a PDF's pages from the URL's #page=N or #page=A-B (not part of `text`)

    @property
    def host(self) -> str:
        return (split_url(self.text).hostname or "") if self.scheme in REMOTE else ""

    def resolved(self, path: Path) -> Location:
        """The same file, named by the real path a policy checked (read what was checked)."""
        return dataclasses.replace(self, text=str(path), path=path)


def locate(url: str) -> Location:
    """The one parse of a media URL; a form mmchat cannot read is a SourceError naming it."""
    text = url.strip()
    fragment = _PAGE_FRAGMENT.search(text)
    if fragment and not text.lower().startswith("data:"):
        where = locate(text[: fragment.start()])
        return dataclasses.replace(where, pages=fragment.group(1).replace(" ", ""))
    if text == "-":
        return Location(text, "stdin", "stdin")
    match = _URL_SCHEME.match(text)
    scheme = match.group(1).lower() if match else ""
    if scheme == "data":
        return Location(text, "data", "data: URL")
    if not match or (scheme not in SCHEMES and not text[match.end() :].startswith("//")):
        return Location(text, "path", url, _path(text))  # a path, even one with a colon in its name
    if scheme == "file":
        parts = split_url(text)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"file URL names another host ({parts.netloc}): {text}: use a local path")
        label = urllib.request.url2pathname(parts.path)
        return Location(text, "file", label, _path(label))
    if scheme in REMOTE:
        split_url(text)  # a URL it cannot read fails here, once
        return Location(text, scheme, text)
    if scheme in DEVICES:
        return Location(text, scheme, text)
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


@dataclasses.dataclass(frozen=True)
class MediaPart:
    """One media part of a message: what the resolver, the policy and the log all take."""

    kind: msgs.PartKind  # "file": told by its content (inputs/claims.py)
    url: str  # as the message gives it: the log finds the part's digest under it
    options: Mapping[str, Any]  # the part's own keys (messages.PART_OPTIONS), over the request's
    where: str  # messages[i].content[j], attach, ...

    @functools.cached_property
    def location(self) -> Location:
        """The URL parsed, once for this part (an unreadable form fails when first asked)."""
        return locate(self.url)


def media_part(part: msgs.Part, where: str = "part") -> MediaPart | None:
    """The media a (validated) part carries; None for a text part."""
    ptype = part["type"]
    kind = msgs.MEDIA_PART_TYPES.get(ptype)
    if kind is None:
        return None
    body = part[ptype]
    if ptype == "input_audio":
        mime = msgs.AUDIO_FORMATS[body["format"]]
        return MediaPart(kind, f"data:{mime};base64,{body['data']}", {}, where)
    return MediaPart(kind, body["url"], {k: v for k, v in body.items() if k != "url"}, where)


def media_parts(messages: Sequence[msgs.Message]) -> list[MediaPart]:
    """Every media part of a conversation, in order; the messages are validated (once) first."""
    checked = msgs.validate_messages(messages)
    found = getattr(checked, "media_parts", None)
    if found is None:
        found = checked.media_parts = [
            ref
            for i, message in enumerate(checked)
            if not isinstance(message["content"], str)
            for j, part in enumerate(message["content"])
            if (ref := media_part(part, f"messages[{i}].content[{j}]")) is not None
        ]
    return found


def short(url: str) -> str:
    """A URL short enough for a one-line message."""
    return url if len(url) <= 60 else url[:40] + "…" + url[-12:]
