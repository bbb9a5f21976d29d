"""Image bytes become upright, RGB, size-capped pixels, the way a photo viewer would show them.

- EXIF orientation is applied, so a phone photo is seen upright.
- Transparency is flattened onto white: a logo or screenshot with a clear background looks
  as it does in a browser, where black (the usual default) would hide dark content.
- Palette, greyscale, 1-bit, CMYK and 16-bit images become 8-bit RGB; an embedded ICC
  profile is converted to sRGB when Pillow's colour management can read it.
- Animated GIF/WebP/PNG: the first frame.
- The long side is scaled down to `max_side` (never up): a 4K photo costs the model no
  more tokens than it can use, and decoding a big JPEG uses its cheap DCT scaling.
- HEIC/HEIF come from pillow-heif, registered on first need; AVIF from Pillow itself.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import PIL.Image
from PIL import ImageCms, ImageOps

from mmchat.config import DEFAULT_IMAGE_MAX_SIDE, DEFAULT_MAX_IMAGE_PIXELS
from mmchat.errors import MediaError, MmchatError
from mmchat.media import Image

__all__ = ["decode_image", "from_pixels", "pixels_from_pil"]

_WHITE = (255, 255, 255, 255)
_WIDE_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_heif_ready = False
# What Pillow's plugins raise on corrupt or truncated data (they are not consistent).
_CODEC_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
    MemoryError,
)


def decode_image(
    data: bytes,
    *,
    label: str,
    max_side: int | None = DEFAULT_IMAGE_MAX_SIDE,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> Image:
    """Decode image bytes to upright RGB pixels whose long side is at most `max_side`."""
    if data[4:8] == b"ftyp":  # ISO-BMFF: HEIC/HEIF/AVIF may need the plugin
        _register_heif()
    try:
        with warnings.catch_warnings():
            # Our cap (max_pixels) is the guard; Pillow's warning threshold sits below it.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            im = PIL.Image.open(io.BytesIO(data))
            _check_pixels(im, label, max_pixels)
            if max_side is not None and im.format == "JPEG":
                im.draft(None, _fit(im.size, 2 * max_side))  # DCT scaling, still 2x the target
            return _finish(im, label, max_side)
    except MmchatError:
        raise
    except PIL.Image.DecompressionBombError:
        limit = 2 * (PIL.Image.MAX_IMAGE_PIXELS or 0)
        raise MediaError(
            f"{label} is larger than Pillow's safety limit of {limit:,} pixels"
            " (a decompression bomb?): use a smaller image"
        ) from None
    except PIL.UnidentifiedImageError:
        raise MediaError(
            f"cannot decode {label} as an image: not a format Pillow reads (PNG, JPEG, WebP, GIF, HEIC, ...)"
        ) from None
    except _CODEC_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MediaError(f"cannot decode {label} as an image ({reason}): check that the file is complete") from None


def pixels_from_pil(
    img: PIL.Image.Image, label: str = "image", *, max_side: int | None = DEFAULT_IMAGE_MAX_SIDE
) -> Image:
    """An in-memory PIL image, prepared exactly like a decoded file."""
    try:
        return _finish(img, label, max_side)
    except MmchatError:
        raise
    except _CODEC_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise MediaError(f"cannot use {label} as an image ({reason}): pass an RGB or RGBA image") from None


def _check_pixels(im: PIL.Image.Image, label: str, max_pixels: int | None) -> None:
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise MediaError(
            f"{label} is {width}x{height} pixels, more than the limit of {max_pixels:,}: scale it down first"
        )


def from_pixels(pixels: np.ndarray, label: str, max_side: int | None = DEFAULT_IMAGE_MAX_SIDE) -> Image:
    """RGB pixels already upright (a screen capture), scaled as a decoded file is."""
    if max_side is None or max(pixels.shape[:2]) <= max_side:
        return Image(pixels=pixels, source=label)
    return _finish(PIL.Image.fromarray(pixels), label, max_side)


def _finish(im: PIL.Image.Image, label: str, max_side: int | None) -> Image:
    """Upright, RGB, scaled; the current frame (a freshly opened file is at its first)."""
    im = ImageOps.exif_transpose(im)
    im = _to_rgb(im)
    if max_side is not None and max(im.size) > max_side:
        im = im.resize(_fit(im.size, max_side), PIL.Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.size == 0:
        raise MediaError(f"cannot decode {label} as an image: it has no pixels")
    return Image(pixels=pixels, source=label)


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size with the long side at most `max_side`, aspect kept (never larger)."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(im: PIL.Image.Image) -> PIL.Image.Image:
    if im.mode in _WIDE_GREY:
        return _wide_grey_to_rgb(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("PA", "RGBa", "La") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    im = _to_srgb(im)
    if im.mode in ("RGBA", "LA"):
        background = PIL.Image.new("RGBA", im.size, _WHITE)
        background.alpha_composite(im.convert("RGBA"))
        im = background
    return im if im.mode == "RGB" else im.convert("RGB")


def _wide_grey_to_rgb(im: PIL.Image.Image) -> PIL.Image.Image:
    """16-bit and float greyscale: scale to 8 bits (Pillow's convert clips at 255)."""
    values = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    else:
        top = 255.0 if values.size and values.max() <= 255 else 65535.0
    grey = np.clip(np.nan_to_num(values) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    return PIL.Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def _to_srgb(im: PIL.Image.Image) -> PIL.Image.Image:
    """Apply an embedded ICC profile (CMYK, Display P3, Adobe RGB); keep the image if it fails."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return im
    out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im


def _register_heif() -> None:
    """pillow-heif adds HEIC/HEIF (iPhone photos); Pillow 11.3+ wheels read AVIF themselves."""
    global _heif_ready
    if _heif_ready:
        return
    _heif_ready = True
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
    from PIL import features

    if not features.check("avif") and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()
