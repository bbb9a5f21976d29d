"""Decoded media: what the engine hands to libmtmd, built from bytes by mmchat itself."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy stays out of `mmchat --help`'s start-up
    import numpy as np

Kind = Literal["image", "audio", "video"]


@dataclasses.dataclass(frozen=True, eq=False)
class Image:
    """RGB pixels, shape (height, width, 3), uint8, C-contiguous."""

    pixels: np.ndarray
    source: str = ""
    # set on two adjacent video frames that a Qwen-VL projector encodes as one temporal patch:
    # both carry the pair's id, so the merged chunk is cached under the pair, not the first frame
    merge_key: str | None = None
    released: bool = False  # a stand-in: same size, source and digest, no pixels (see without_pixels)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @functools.cached_property
    def _digest(self) -> str:
        return _content_hash(f"image:{self.width}x{self.height}", self.pixels)

    def digest(self) -> str:
        """Content hash: the key for caches of encoded media (same pixels, same id)."""
        return self._digest

    def without_pixels(self) -> Image:
        """The same image (size, source, digest) holding no pixels: what the resolver keeps once the
        engine holds its encoding, so a follow-up gives it again without decoding or encoding it."""
        import numpy as np

        stand_in = Image(
            np.broadcast_to(np.zeros((1, 1, 3), np.uint8), self.pixels.shape),
            self.source,
            self.merge_key,
            released=True,
        )
        stand_in.__dict__["_digest"] = self.digest()  # a zero-stride view: nothing to hash, nothing held
        return stand_in


@dataclasses.dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 samples in [-1, 1] at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int
    source: str = ""

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    @functools.cached_property
    def _digest(self) -> str:
        return _content_hash(f"audio:{self.sample_rate}", self.samples)

    def digest(self) -> str:
        return self._digest


def _content_hash(prefix: str, array: np.ndarray) -> str:
    h = hashlib.blake2b(prefix.encode(), digest_size=16)
    h.update(memoryview(array).cast("B") if array.flags.c_contiguous else array.tobytes())
    return h.hexdigest()


def opened(src: bytes | Path) -> str | io.BytesIO:
    """What soundfile and PyAV open: a file on disk by its path, bytes in memory as a stream."""
    return str(src) if isinstance(src, Path) else io.BytesIO(src)


def with_article(kind: Kind) -> str:
    """ "an image", "audio", "a video": a kind as a sentence names it."""
    return {"image": "an image", "audio": "audio", "video": "a video"}.get(kind, kind)


__all__ = ["Audio", "Image", "Kind", "opened", "with_article"]
