"""In-memory media -> message parts (data: URLs), for people who script in Python."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from .messages import Part, data_url, image_part, input_audio_part

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage


def image_from_pil(image: PILImage, format: str = "PNG") -> Part:
    """A PIL image as an image_url part (PNG keeps the pixels exactly)."""
    buf = io.BytesIO()
    image.save(buf, format=format)
    return image_part(data_url(buf.getvalue(), f"image/{format.lower()}"))


def image_from_bytes(data: bytes, mime: str = "application/octet-stream") -> Part:
    """Encoded image bytes (PNG, JPEG, HEIC...) as an image_url part; the kind is detected later."""
    return image_part(data_url(data, mime))


def audio_from_array(samples: np.ndarray, sample_rate: int) -> Part:
    """A numpy signal ((n,), (n, channels) or (channels, n); int or float) as a WAV part."""
    import soundfile

    from .media.audio import audio_from_array as to_audio

    audio = to_audio(samples, sample_rate)  # mono float32: what the model gets anyway
    buf = io.BytesIO()
    soundfile.write(buf, audio.samples, audio.sample_rate, format="WAV", subtype="FLOAT")
    return input_audio_part(buf.getvalue(), "wav")
