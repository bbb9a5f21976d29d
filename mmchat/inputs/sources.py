"""A URL or a path becomes bytes; `mmchat.inputs.sniff` says what they are (content, never the name).

Forms: a path (``~`` expanded), ``file://`` (percent-decoded), ``data:`` (base64 or
percent-encoded), ``http(s)://`` (stdlib urllib: a per-read timeout, a total deadline and a
speed floor, size cap, bounded redirects, progress as `downloading URL`) and ``-`` for standard input. Every failure is a `SourceError` whose
message names the input and says what to do next.
"""

from __future__ import annotations

import base64
import binascii
import errno
import http.client
import re
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..config import (
    DEFAULT_HTTP_TIMEOUT,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_URL_DEADLINE,
    DEFAULT_URL_SPEED_LIMIT,
    DEFAULT_URL_SPEED_TIME,
)
from ..engine.base import Progress
from ..errors import SourceError
from ..media import Kind
from . import part as part_location
from .netlimits import Deadline, Guard, opener
from .part import Location, short, split_url
from .sniff import detect_kind

__all__ = ["Progress", "Source", "TooLarge", "read_source"]

_CHUNK = 256 * 1024
_USER_AGENT = "mmchat (multimodal chat over llama.cpp; python urllib)"


@dataclass(frozen=True)
class Source:
    """Bytes read from one input, with what they turned out to be."""

    data: bytes = field(repr=False)
    kind: Kind | None  # detected from the bytes, never from the extension
    label: str  # for messages: the path as given, 'stdin', 'data: URL', or the URL
    mime: str | None  # detected; else what the data: URL or server declared
    path: Path | None = None  # set by local_source: the file itself, `data` holds only its head


def read_source(
    url: str | Location,
    *,
    stdin: BinaryIO | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout: float = DEFAULT_HTTP_TIMEOUT,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    progress: Progress | None = None,
    deadline: float | None = DEFAULT_URL_DEADLINE,
    speed_limit: int = DEFAULT_URL_SPEED_LIMIT,
    speed_time: float = DEFAULT_URL_SPEED_TIME,
    guard: Guard | None = None,
) -> Source:
    """Read a path, file://, data:, http(s):// URL or '-' (stdin) into a `Source`.

    A download ends after `deadline` seconds in all (None: never), or when it stays under
    `speed_limit` bytes a second for `speed_time` seconds (0: no floor); `guard` checks the
    address of every connection and every redirect (mmchat.inputs.policy)."""
    where = url if isinstance(url, Location) else part_location.locate(url)
    reading = Reading(stdin, max_bytes, timeout, max_redirects, progress, deadline, guard, speed_limit, speed_time)
    data, declared = READERS[where.scheme](where, reading)
    kind, mime = detect_kind(data)
    return Source(data=data, kind=kind, label=where.label, mime=mime or declared)


@dataclass(frozen=True)
class Reading:
    """What one read may use and spend (read_source's keywords)."""

    stdin: BinaryIO | None
    max_bytes: int
    timeout: float
    max_redirects: int
    progress: Progress | None
    deadline: float | None
    guard: Guard | None
    speed_limit: int = DEFAULT_URL_SPEED_LIMIT  # bytes a second a download must keep up ...
    speed_time: float = DEFAULT_URL_SPEED_TIME  # ... over this many seconds (0: no floor)


def _from_stdin(where: Location, reading: Reading) -> tuple[bytes, str | None]:
    stream = reading.stdin if reading.stdin is not None else sys.stdin.buffer
    data = stream.read(reading.max_bytes + 1)
    _check_size(data, where.label, reading.max_bytes, "nothing arrived on stdin: pipe a file in, e.g. '< photo.jpg'")
    return data, None


def _from_data_url(where: Location, reading: Reading) -> tuple[bytes, str | None]:
    data, declared = _parse_data_url(where.text)
    _check_size(data, where.label, reading.max_bytes, "the data: URL holds no bytes: check how it was built")
    return data, declared


def _from_file(where: Location, reading: Reading) -> tuple[bytes, str | None]:
    assert where.path is not None
    return _read_path(where.path, where.label, reading.max_bytes), None


def _from_web(where: Location, reading: Reading) -> tuple[bytes, str | None]:
    url = where.text
    with Deadline(reading.deadline, reading.speed_limit, reading.speed_time) as limit:
        try:
            found = _download(
                url, reading.max_bytes, reading.timeout, reading.max_redirects, reading.progress, limit, reading.guard
            )
        except SourceError:
            if limit.expired:
                raise _late(url, limit) from None
            raise
        if limit.expired:
            raise _late(url, limit)
    return found


def _from_device(where: Location, reading: Reading) -> tuple[bytes, str | None]:
    """clipboard:, screen: and mic:SECONDS, read by the one capture the CLI keeps too (capture.capture);
    a file copied on the clipboard is read as that file."""
    from .capture import Clip, capture, clipboard_image

    got = capture(where)
    if len(got.files) == 1:
        return _read_path(Path(got.files[0]), got.files[0], reading.max_bytes), None
    if got.files:
        return clipboard_image(Clip(files=got.files)), None  # says there are several
    return got.encoded(), got.mime


#: how each URL form of part.locate() is read: a new form is a reader here and its entry in part.SCHEMES
READERS: dict[str, Callable[[Location, Reading], tuple[bytes, str | None]]] = {
    "stdin": _from_stdin,
    "data": _from_data_url,
    "path": _from_file,
    "file": _from_file,
    "http": _from_web,
    "https": _from_web,
    "clipboard": _from_device,
    "screen": _from_device,
    "mic": _from_device,
}


def local_source(url: str | Location, head: int = 1 << 20) -> Source | None:
    """For a plain path or file:// URL: the file's head (for detection) and its path, so a
    long video is decoded from disk instead of being read into memory. None for other forms."""
    where = url if isinstance(url, Location) else part_location.locate(url)
    if where.path is None:
        return None
    data = _read_path(where.path, where.label, max_bytes=sys.maxsize, limit=head)  # only the head is read: no cap
    kind, mime = detect_kind(data)
    return Source(data=data, kind=kind, label=where.label, mime=mime, path=where.path)


def _check_size(data: bytes, label: str, max_bytes: int, when_empty: str) -> None:
    if not data:
        raise SourceError(when_empty)
    if len(data) > max_bytes:
        raise _too_large(label, max_bytes)


class TooLarge(SourceError):
    """More bytes than `max_bytes`: the caller that set the limit may say whose limit it is."""


def _too_large(label: str, max_bytes: int, size: int | None = None) -> SourceError:
    what = f" ({_mib(size)})" if size is not None else ""
    return TooLarge(f"{label} is larger than the {_mib(max_bytes)} limit{what}: use a smaller file or raise the limit")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _read_path(path: Path, label: str, max_bytes: int, limit: int | None = None) -> bytes:
    from .capture import written

    written(path)  # a screen capture still being written is read whole
    try:
        if path.is_dir():
            raise SourceError(f"{label} is a directory, not a file: name a file inside it")
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(label, max_bytes, size)
        with path.open("rb") as f:
            data = f.read(limit or max_bytes + 1)  # st_size is 0 for pipes and /proc files: read anyway
    except FileNotFoundError:
        raise SourceError(f"file not found: {label}: check the path") from None
    except PermissionError:
        raise SourceError(f"permission denied reading {label}: check the file's permissions") from None
    except IsADirectoryError:
        raise SourceError(f"{label} is a directory, not a file: name a file inside it") from None
    except OSError as exc:
        raise SourceError(f"cannot read {label} ({exc.strerror or exc}): check the path") from None
    _check_size(data, label, max_bytes, f"{label} is empty (0 bytes): choose a file with content")
    return data


def _parse_data_url(url: str) -> tuple[bytes, str | None]:
    """RFC 2397: data:[<mediatype>][;base64],<data>."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise SourceError("malformed data: URL (no comma before the data): expected data:[type][;base64],DATA")
    params = [p.strip() for p in header.split(";")]
    is_base64 = params[-1].lower() == "base64"
    if is_base64:
        params.pop()
    mediatype = params[0].lower() if params and "/" in params[0] else None
    if not is_base64:
        return urllib.parse.unquote_to_bytes(payload), mediatype
    # Percent-escapes and whitespace creep into base64 that passed through URLs and JSON.
    text = re.sub(r"\s+", "", urllib.parse.unquote(payload))
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True), mediatype
    except (binascii.Error, ValueError):
        raise SourceError("data: URL has invalid base64: re-encode the file with base64") from None


class _RedirectLimit(urllib.request.HTTPRedirectHandler):
    """Follow at most `limit` redirects, only to http(s), and only where the guard allows."""

    def __init__(self, limit: int, guard: Guard | None = None) -> None:
        super().__init__()
        self.max_redirections = limit
        self.max_repeats = min(self.max_repeats, limit)
        self.guard = guard

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            fp.close()
            raise SourceError(f"{req.full_url} redirects to {newurl}: only http(s) is followed")
        if self.guard is not None:
            try:
                self.guard.check_redirect(req.full_url, newurl)
            except BaseException:
                fp.close()
                raise
        if len(getattr(req, "redirect_dict", {})) >= self.max_redirections:  # the base skips the 1st
            fp.close()
            raise urllib.error.HTTPError(req.full_url, code, self.inf_msg + msg, headers, None)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(
    url: str,
    max_bytes: int,
    timeout: float,
    max_redirects: int,
    progress: Progress | None,
    deadline: Deadline,
    guard: Guard | None,
) -> tuple[bytes, str | None]:
    fetch = opener(deadline, guard, _RedirectLimit(max_redirects, guard))
    host = split_url(url).hostname or url
    try:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    except ValueError as exc:
        raise SourceError(f"{url} is not a valid URL ({exc}): check it") from None
    try:
        with fetch.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.strip().isdigit() else None
            if total is not None and total > max_bytes:
                raise _too_large(url, max_bytes, total)
            data = _read_body(response, total, url, max_bytes, progress, deadline)
            declared = response.headers.get_content_type() if "Content-Type" in response.headers else None
    except urllib.error.HTTPError as exc:
        exc.close()
        if str(exc.reason).startswith(urllib.request.HTTPRedirectHandler.inf_msg):
            raise SourceError(
                f"too many redirects (more than {max_redirects}) from {url}: check the URL in a browser"
            ) from None
        raise SourceError(f"HTTP {exc.code} from {url}: check the URL") from None
    except urllib.error.URLError as exc:
        raise _unreachable(url, host, exc.reason, timeout) from None
    except TimeoutError:
        raise _unreachable(url, host, TimeoutError(), timeout) from None
    except http.client.IncompleteRead:
        raise SourceError(f"download of {url} was cut short: try again") from None
    except (http.client.HTTPException, OSError) as exc:
        raise SourceError(f"download of {url} failed ({exc}): try again later") from None
    except ValueError as exc:  # urllib's word for a URL it cannot send: a bad port, a non-ASCII host
        raise SourceError(f"{url} is not a valid URL ({exc}): check it") from None
    if not data:
        raise SourceError(f"empty response from {url}: check the URL")
    return data, declared


def _read_body(
    response, total: int | None, url: str, max_bytes: int, progress: Progress | None, deadline: Deadline
) -> bytes:
    chunks: list[bytes] = []
    done = 0
    label = f"downloading {short(url)}"
    if progress is not None:
        progress(label, 0, total)
    while not deadline.expired and (chunk := response.read1(_CHUNK)):
        deadline.received(len(chunk))
        done += len(chunk)
        if done > max_bytes:
            raise _too_large(url, max_bytes)
        chunks.append(chunk)
        if progress is not None:
            progress(label, done, total)
    return b"".join(chunks)


def _late(url: str, limit: Deadline) -> SourceError:
    """What ended a download: the speed floor (naming the rate it got) or the deadline."""
    if limit.slow_rate is not None:
        return SourceError(
            f"{url} came at {_rate(limit.slow_rate)} for {limit.stretch:g} s, under the "
            f"{_rate(limit.floor)} floor (--speed-limit, --speed-time): try again later, "
            "download it first, or lower --speed-limit"
        )
    return SourceError(
        f"{url} did not arrive within {limit.seconds:g} s (--url-deadline): "
        "try again later, download it first, or raise --url-deadline"
    )


def _rate(per_second: float) -> str:
    for unit, size in (("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if per_second >= size:
            return f"{per_second / size:.3g} {unit}"
    return f"{per_second:.2g} B/s" if per_second < 10 else f"{per_second:.0f} B/s"


def _unreachable(url: str, host: str, reason: object, timeout: float) -> SourceError:
    if isinstance(reason, TimeoutError):
        return SourceError(f"timed out after {timeout:g} s fetching {url}: try again later or download it first")
    if isinstance(reason, socket.gaierror) or (
        isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    ):
        return SourceError(f"could not reach host {host} (no network?): check the URL and your connection")
    if isinstance(reason, ConnectionRefusedError):
        return SourceError(f"could not connect to {host} (connection refused): check the URL and port")
    if isinstance(reason, ssl.SSLError):
        return SourceError(f"TLS error from {host} ({getattr(reason, 'reason', None) or reason}): check the URL")
    return SourceError(f"could not fetch {url} ({reason}): check the URL and your connection")
