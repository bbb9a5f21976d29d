"""A URL or a path becomes bytes, and the bytes say what they are (content, never the name).

Forms: a path (``~`` expanded), ``file://`` (percent-decoded), ``data:`` (base64 or
percent-encoded), ``http(s)://`` (stdlib urllib: timeout, size cap, bounded redirects,
progress callback) and ``-`` for standard input. Every failure is a `SourceError` whose
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

from mmchat.config import DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_MAX_REDIRECTS
from mmchat.errors import SourceError
from mmchat.media import Kind

__all__ = ["Progress", "Source", "detect_kind", "read_source"]

Progress = Callable[[int, int | None], None]
"""Called as progress(bytes_so_far, total_or_None) while a download streams in."""

_CHUNK = 256 * 1024
_USER_AGENT = "mmchat (multimodal chat over llama.cpp; python urllib)"
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")  # 2+ letters: C:\ stays a path


@dataclass(frozen=True)
class Source:
    """Bytes read from one input, with what they turned out to be."""

    data: bytes = field(repr=False)
    kind: Kind | None  # detected from the bytes, never from the extension
    label: str  # for messages: the path as given, 'stdin', 'data: URL', or the URL
    mime: str | None  # detected; else what the data: URL or server declared
    path: Path | None = None  # set by local_source: the file itself, `data` holds only its head


def read_source(
    url_or_path: str,
    *,
    stdin: BinaryIO | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout: float = DEFAULT_HTTP_TIMEOUT,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    progress: Progress | None = None,
) -> Source:
    """Read a path, file://, data:, http(s):// URL or '-' (stdin) into a `Source`."""
    text = url_or_path.strip()
    declared: str | None = None
    if text == "-":
        label = "stdin"
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read(max_bytes + 1)
        _check_size(data, label, max_bytes, "nothing arrived on stdin: pipe a file in, e.g. '< photo.jpg'")
    elif text[:5].lower() == "data:":
        label = "data: URL"
        data, declared = _parse_data_url(text)
        _check_size(data, label, max_bytes, "the data: URL holds no bytes: check how it was built")
    elif (match := _URL_SCHEME.match(text)) is None:
        label = url_or_path
        data = _read_path(Path(text).expanduser(), label, max_bytes)
    elif (scheme := match.group(1).lower()) == "file":
        parts = urllib.parse.urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"file URL names another host ({parts.netloc}): {text}: use a local path")
        label = urllib.request.url2pathname(parts.path)
        data = _read_path(Path(label), label, max_bytes)
    elif scheme in ("http", "https"):
        label = text
        data, declared = _download(text, max_bytes, timeout, max_redirects, progress)
    else:
        raise SourceError(f"unsupported URL scheme '{scheme}:' in {text}: use a path, file://, http(s):// or data:")
    kind, mime = detect_kind(data)
    return Source(data=data, kind=kind, label=label, mime=mime or declared)


def local_path(url_or_path: str) -> tuple[str, Path] | None:
    """(label, path) for a plain path or a local file:// URL; None for every other form."""
    text = url_or_path.strip()
    if text == "-" or text[:5].lower() == "data:":
        return None
    match = _URL_SCHEME.match(text)
    if match is None:
        return url_or_path, Path(text).expanduser()
    if match.group(1).lower() == "file" and urllib.parse.urlsplit(text).netloc in ("", "localhost"):
        label = urllib.request.url2pathname(urllib.parse.urlsplit(text).path)
        return label, Path(label)
    return None


def local_source(url_or_path: str, head: int = 1 << 20) -> Source | None:
    """For a plain path or file:// URL: the file's head (for detection) and its path, so a
    long video is decoded from disk instead of being read into memory. None for other forms."""
    local = local_path(url_or_path)
    if local is None:
        return None
    label, path = local
    data = _read_path(path, label, max_bytes=max(head, path.stat().st_size if path.is_file() else 0), limit=head)
    kind, mime = detect_kind(data)
    return Source(data=data, kind=kind, label=label, mime=mime, path=path)


def _check_size(data: bytes, label: str, max_bytes: int, when_empty: str) -> None:
    if not data:
        raise SourceError(when_empty)
    if len(data) > max_bytes:
        raise _too_large(label, max_bytes)


def _too_large(label: str, max_bytes: int, size: int | None = None) -> SourceError:
    what = f" ({_mib(size)})" if size is not None else ""
    return SourceError(
        f"{label} is larger than the {_mib(max_bytes)} limit{what}: use a smaller file or raise the limit"
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _read_path(path: Path, label: str, max_bytes: int, limit: int | None = None) -> bytes:
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
    """Follow at most `limit` redirects, and only to http(s)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.max_redirections = limit
        self.max_repeats = min(self.max_repeats, limit)

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            fp.close()
            raise SourceError(f"{req.full_url} redirects to {newurl}: only http(s) is followed")
        if len(getattr(req, "redirect_dict", {})) >= self.max_redirections:  # the base skips the 1st
            fp.close()
            raise urllib.error.HTTPError(req.full_url, code, self.inf_msg + msg, headers, None)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(
    url: str, max_bytes: int, timeout: float, max_redirects: int, progress: Progress | None
) -> tuple[bytes, str | None]:
    opener = urllib.request.build_opener(_RedirectLimit(max_redirects))
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    host = urllib.parse.urlsplit(url).hostname or url
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.strip().isdigit() else None
            if total is not None and total > max_bytes:
                raise _too_large(url, max_bytes, total)
            data = _read_body(response, total, url, max_bytes, progress)
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
    if not data:
        raise SourceError(f"empty response from {url}: check the URL")
    return data, declared


def _read_body(response, total: int | None, url: str, max_bytes: int, progress: Progress | None) -> bytes:
    chunks: list[bytes] = []
    done = 0
    if progress is not None:
        progress(0, total)
    while chunk := response.read(_CHUNK):
        done += len(chunk)
        if done > max_bytes:
            raise _too_large(url, max_bytes)
        chunks.append(chunk)
        if progress is not None:
            progress(done, total)
    return b"".join(chunks)


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


# --- what the bytes are -------------------------------------------------------------------

_SIGNATURES: list[tuple[bytes, Kind, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image", "image/png"),
    (b"\xff\xd8\xff", "image", "image/jpeg"),
    (b"GIF87a", "image", "image/gif"),
    (b"GIF89a", "image", "image/gif"),
    (b"II*\x00", "image", "image/tiff"),
    (b"MM\x00*", "image", "image/tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image", "image/jp2"),
    (b"qoif", "image", "image/qoi"),
    (b"fLaC", "audio", "audio/flac"),
    (b"#!AMR", "audio", "audio/amr"),
    (b"caff", "audio", "audio/x-caf"),
    (b"FLV\x01", "video", "video/x-flv"),
    (b"\x00\x00\x01\xba", "video", "video/mpeg"),
    (b"0&\xb2u\x8ef\xcf\x11", "video", "video/x-ms-asf"),  # WMV/WMA: FFmpeg reads either
]
_RIFF = {b"WAVE": ("audio", "audio/wav"), b"WEBP": ("image", "image/webp"), b"AVI ": ("video", "video/x-msvideo")}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"pnot"}  # QuickTime files that predate 'ftyp'
_MKV_VIDEO_CODEC = re.compile(rb"\x86[\x81-\x9f]V_")  # CodecID element, value 'V_...'
_MKV_AUDIO_CODEC = re.compile(rb"\x86[\x81-\x9f]A_")
_MP4_HANDLER = re.compile(rb"hdlr.{8}(vide|soun)", re.DOTALL)


def detect_kind(data: bytes) -> tuple[Kind | None, str | None]:
    """What the bytes are, from magic numbers: ('image', 'image/png'), ... or (None, None)."""
    head = data[:64]
    for magic, kind, mime in _SIGNATURES:
        if head.startswith(magic):
            return kind, mime
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio", "audio/aiff"
    if head[4:8] == b"ftyp":
        return _iso_bmff(data)
    if head[4:8] in _QT_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "video", "video/quicktime"
    if head[:4] == b"\x1aE\xdf\xa3":
        return _matroska(data)
    if head[:4] == b"OggS":
        return ("video", "video/ogg") if b"\x80theora" in data[:65536] else ("audio", "audio/ogg")
    if head[:3] == b"ID3" and len(head) >= 10:  # a tag, then the real stream
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
        after = data[10 + size + (10 if head[5] & 0x10 else 0) :]
        if after[:4] == b"fLaC":
            return "audio", "audio/flac"
        return ("audio", "audio/aac") if _is_adts(after) else ("audio", "audio/mpeg")
    if _is_adts(data):
        return "audio", "audio/aac"
    if _is_mpeg_audio(data):
        return "audio", "audio/mpeg"
    if len(data) > 188 * 2 and data[0] == data[188] == data[376] == 0x47:
        return "video", "video/mp2t"
    if head[:2] == b"BM" and len(head) >= 26 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image", "image/bmp"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 22 and 0 < int.from_bytes(head[4:6], "little") < 256:
        return "image", "image/x-icon"
    return None, None


def _iso_bmff(data: bytes) -> tuple[Kind, str]:
    """ISO base media (MP4, MOV, M4A, HEIC, AVIF): the brands say which."""
    size = int.from_bytes(data[:4], "big")
    major = data[8:12]
    brands = {major} | {data[i : i + 4] for i in range(16, min(size, 256) - 3, 4)}
    for group in ({major}, brands):  # the major brand decides; compatible brands break ties
        if group & _AVIF_BRANDS:
            return "image", "image/avif"
        if group & _HEIC_BRANDS:
            return "image", "image/heic"
        if group & _HEIF_BRANDS:
            return "image", "image/heif"
        if group & _AUDIO_BRANDS:
            return "audio", "audio/mp4"
    if major == b"qt  ":
        return "video", "video/quicktime"
    if major.startswith(b"3g"):
        return "video", "video/3gpp"
    # Generic brands (isom, mp41, mp42, ...) are audio-only when no track says 'vide'.
    handlers = {m.group(1) for m in _MP4_HANDLER.finditer(data)}
    if handlers == {b"soun"}:
        return "audio", "audio/mp4"
    return "video", "video/mp4"


def _matroska(data: bytes) -> tuple[Kind, str]:
    """EBML: WebM or Matroska; audio when the track list (near the start) has no video."""
    head = data[:65536]
    webm = b"B\x82\x84webm" in head[:64]
    if _MKV_AUDIO_CODEC.search(head) and not _MKV_VIDEO_CODEC.search(head):
        return "audio", "audio/webm" if webm else "audio/x-matroska"
    return "video", "video/webm" if webm else "video/x-matroska"


def _is_adts(data: bytes) -> bool:
    """AAC in ADTS frames: 12 sync bits, layer 0, a valid rate, and the next frame in place."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0 or (data[2] >> 2) & 0xF > 12:
        return False
    return _next_frame_ok(data, (data[3] & 3) << 11 | data[4] << 3 | data[5] >> 5)


_MPEG_KBPS = {  # (version 1?, layer) -> bitrate table (kbit/s) by index
    (True, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _is_mpeg_audio(data: bytes) -> bool:
    """An MPEG audio frame header (no reserved values), and the next frame where it belongs."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version, layer = (data[1] >> 3) & 3, (data[1] >> 1) & 3  # layer bits: 3 = I, 1 = III
    index, rate_index, padding = data[2] >> 4, (data[2] >> 2) & 3, (data[2] >> 1) & 1
    if version == 1 or layer == 0 or index in (0, 15) or rate_index == 3:
        return False
    bits = _MPEG_KBPS[(version == 3, layer)][index] * 1000
    rate = _MPEG_RATES[version][rate_index]
    if layer == 3:
        length = (12 * bits // rate + padding) * 4
    else:
        length = (144 if version == 3 or layer == 2 else 72) * bits // rate + padding
    return _next_frame_ok(data, length)


def _next_frame_ok(data: bytes, length: int) -> bool:
    """A frame stream: the next frame starts with sync bits, or the data ends there."""
    if length < 7:
        return False
    nxt = data[length : length + 2]
    return len(nxt) < 2 or (nxt[0] == 0xFF and nxt[1] & 0xE0 == 0xE0)
