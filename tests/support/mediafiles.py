"""Small media files made on the fly for tests (nothing binary is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def noise_png(path: Path, seed: int = 0, size: tuple[int, int] = (96, 64)) -> Path:
    """An RGB PNG of random pixels: lossless, so libmtmd and Pillow see the same values."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def tone(seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_wav(path: Path, seconds: float = 1.0, freq: float = 440.0, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    import soundfile

    soundfile.write(path, tone(seconds, freq, rate), rate, subtype=subtype)
    return path


def halves_png(path: Path, size: tuple[int, int] = (64, 32), left=(255, 0, 0), right=(0, 0, 255)) -> Path:
    """A PNG whose left half is one colour and right half another (red | blue): a preview's cells
    (or pixels on screen) must follow it."""
    from PIL import Image

    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 2] = left
    pixels[:, size[0] // 2 :] = right
    Image.fromarray(pixels).save(path)
    return path
