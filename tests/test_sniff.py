"""sniff.py: the kind comes from the bytes, never the name: every format we read, and no false hits."""

from __future__ import annotations

import io

import av
import numpy as np
import PIL.Image
import pytest
import soundfile

from mmchat.inputs.sniff import detect_kind


def _png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def _pil(fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 12), "teal").save(buf, fmt, **kw)
    return buf.getvalue()


def _heic() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _pil("HEIF")


def _sf(fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    t = np.arange(8000) / 8000
    soundfile.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, format=fmt, subtype=subtype)
    return buf.getvalue()


def _av(fmt: str, audio: str | None, video: str | None) -> bytes:
    """A 0.2 s clip written by PyAV: a 32x32 picture track and/or a 440 Hz tone."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        vs = out.add_stream(video, rate=10) if video else None
        stream = out.add_stream(audio, rate=48000, layout="mono") if audio else None
        if vs is not None:  # every stream is added before the first packet is muxed
            vs.width = vs.height = 32
            vs.pix_fmt = "yuv420p"
            for i in range(2):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 90, np.uint8), format="rgb24")
                out.mux(vs.encode(frame))
            out.mux(vs.encode())
        if stream is not None:
            ctx = stream.codec_context
            size = ctx.frame_size or 1024
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(9600) / 48000)).astype(np.float32)
            for start in range(0, len(tone), size):
                chunk = tone[start : start + size][None, :]
                frame = av.AudioFrame.from_ndarray(
                    chunk, format="fltp" if ctx.format.is_planar else "flt", layout="mono"
                )
                frame.sample_rate, frame.pts = 48000, start
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
    return buf.getvalue()


CASES = {
    "png": (lambda: PNG, "image", "image/png"),
    "jpeg": (lambda: _pil("JPEG"), "image", "image/jpeg"),
    "gif": (lambda: _pil("GIF"), "image", "image/gif"),
    "webp": (lambda: _pil("WEBP"), "image", "image/webp"),
    "bmp": (lambda: _pil("BMP"), "image", "image/bmp"),
    "tiff": (lambda: _pil("TIFF"), "image", "image/tiff"),
    "ico": (lambda: _pil("ICO"), "image", "image/x-icon"),
    "avif": (lambda: _pil("AVIF"), "image", "image/avif"),
    "heic": (_heic, "image", "image/heic"),
    "wav": (lambda: _sf("WAV"), "audio", "audio/wav"),
    "flac": (lambda: _sf("FLAC"), "audio", "audio/flac"),
    "ogg-vorbis": (lambda: _sf("OGG", "VORBIS"), "audio", "audio/ogg"),
    "ogg-opus": (lambda: _sf("OGG", "OPUS"), "audio", "audio/ogg"),
    "mp3": (lambda: _sf("MP3"), "audio", "audio/mpeg"),
    "mp3-id3": (lambda: _av("mp3", "libmp3lame", None), "audio", "audio/mpeg"),
    "aac-adts": (lambda: _av("adts", "aac", None), "audio", "audio/aac"),
    "m4a": (lambda: _av("ipod", "aac", None), "audio", "audio/mp4"),
    "mp4-audio-only": (lambda: _av("mp4", "aac", None), "audio", "audio/mp4"),
    "webm-audio-only": (lambda: _av("webm", "libopus", None), "audio", "audio/webm"),
    "mp4": (lambda: _av("mp4", "aac", "mpeg4"), "video", "video/mp4"),
    "mov": (lambda: _av("mov", "aac", "mpeg4"), "video", "video/quicktime"),
    "webm": (lambda: _av("webm", "libopus", "libvpx"), "video", "video/webm"),
    "mkv": (lambda: _av("matroska", "aac", "mpeg4"), "video", "video/x-matroska"),
    "avi": (lambda: _av("avi", "libmp3lame", "mpeg4"), "video", "video/x-msvideo"),
    "ogg-theora": (lambda: b"OggS\x00\x02" + bytes(22) + b"\x2a\x80theora\x03\x02\x01", "video", "video/ogg"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_detect_kind_by_content(name: str) -> None:
    make, kind, mime = CASES[name]
    assert detect_kind(make()) == (kind, mime)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, world\n" * 20,
        b"BMW is a car brand, not a bitmap.\n",
        b"",
        bytes(64),
        *(np.random.default_rng(seed).bytes(4096) for seed in range(3)),
        b"\xff\xe4" + np.random.default_rng(1).bytes(4094),  # an MPEG sync word, then noise
    ],
    ids=["text", "text-starting-BM", "empty", "zeros", "random-0", "random-1", "random-2", "fake-sync"],
)
def test_unknown_bytes_have_no_kind(data: bytes) -> None:
    assert detect_kind(data) == (None, None)
