"""Small videos made on the fly for tests (PyAV): frame i shows pattern(i), optional sound."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import soundfile

from mmchat.media import Image


def pattern(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    bits = np.array([(index >> b) & 1 for b in range(12)], np.uint8).reshape(3, 4) * 255
    grey = np.kron(bits, np.ones((height // 3, width // 4), np.uint8))
    return np.repeat(grey[:, :, None], 3, axis=2)


def read_index(image: Image) -> int:
    h, w = image.height, image.width
    blocks = image.pixels.astype(float).mean(axis=2).reshape(3, h // 3, 4, w // 4).mean(axis=(1, 3))
    return sum(1 << b for b, bit in enumerate(blocks.ravel() > 128) if bit)


def write_video(
    path: Path,
    seconds: float,
    fps: int = 10,
    codec: str = "libx264",
    size: tuple[int, int] = (64, 48),
    gop: int | None = None,
    tone_from: float | None = None,
    audio_codec: str = "aac",
    audio_rate: int = 44_100,
    audio_start: float = 0.0,
    changed: int | None = None,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """A video whose frame i shows pattern(i) (frame `changed` inverted), optionally with sound."""
    width, height = size
    fmt = "gif" if codec == "gif" else None
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(codec, rate=fps, options=options or {})
        vs.width, vs.height = width, height
        vs.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if gop:
            vs.codec_context.gop_size = gop
        if rotation is not None:
            vs.set_display_rotation(rotation)
        astream = out.add_stream(audio_codec, rate=audio_rate, layout="mono") if tone_from is not None else None
        for i in range(round(seconds * fps)):
            picture = pattern(i, width, height)
            frame = av.VideoFrame.from_ndarray(255 - picture if i == changed else picture, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        if astream is not None:
            t = np.arange(round(audio_start * audio_rate), round(seconds * audio_rate)) / audio_rate
            sound = (0.5 * np.sin(2 * np.pi * 440 * t) * (t >= tone_from)).astype(np.float32)
            mux_audio(out, astream, sound, audio_rate, first_pts=round(audio_start * audio_rate))
    return path


def mux_audio(out, astream, sound: np.ndarray, rate: int, first_pts: int = 0) -> None:
    fmt = astream.codec_context.format.name
    for start in range(0, len(sound), 1024):
        block = sound[start : start + 1024][None, :]
        if fmt.startswith("s16"):
            block = (block * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, first_pts + start
        out.mux(astream.encode(frame))
    out.mux(astream.encode())


def audio_only_m4a() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100)).astype(np.float32)
        mux_audio(out, out.add_stream("aac", rate=44_100, layout="mono"), tone, 44_100)
    return buf.getvalue()


def audio_only_ogg() -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(16_000, np.float32), 16_000, format="OGG")
    return buf.getvalue()


def first_half(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def zero_length_avi(path: Path) -> bytes:
    out = av.open(str(path), "w", format="avi")
    vs = out.add_stream("mpeg4", rate=10)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    return path.read_bytes()


def slide(words: str, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """A slide as a screen recording shows one: dark text on white (Pillow's own font: no system fonts)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    picture = PILImage.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=28)
    draw.text((40, 40), "Quarterly review", fill=(20, 20, 20), font=font)
    draw.text((40, 120), words, fill=(20, 20, 20), font=font)
    return np.asarray(picture)


def slides_video(path: Path, slides: list[tuple[np.ndarray, float]], fps: int = 10) -> Path:
    """H.264 at `fps`, each picture held for its seconds: a screen recording of slides."""
    height, width = slides[0][0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        pts = 0
        for picture, seconds in slides:
            for _ in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = pts
                pts += 1
                out.mux(vs.encode(frame))
        out.mux(vs.encode())
    return path
