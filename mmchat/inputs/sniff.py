"""What a file is, from its bytes: magic numbers, container brands, codec ids, frame syncs.

Why: the kind comes from the bytes, never the name. A PNG saved as song.mp3 is an image, a
text file named photo.jpg is nothing, and a URL or a data: URL often has no useful name at
all; every reader (paths, URLs, stdin) asks `detect_kind` the same question of its data.
"""

from __future__ import annotations

import re

from mmchat.media import Kind

__all__ = ["detect_document", "detect_kind"]

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


def detect_document(data: bytes) -> str | None:
    """'pdf' (a %PDF header within the first KiB, as readers accept it), 'text' (UTF-8, or UTF-16
    with a BOM, without NULs or stray control bytes), or None: documents go to the model as pages and text."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return "text" if decode_text(data, final=False) is not None else None


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")  # not tab, newlines, form feed or ESC


def decode_text(data: bytes, final: bool = True) -> str | None:
    """The text the bytes hold, or None when they are not text (`final=False`: a head, possibly cut mid-character)."""
    import codecs

    if not data:
        return None
    encoding = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(data, final=final)
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


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
