"""media/image.py: what a user sees in a viewer is what the model gets, as HxWx3 uint8 RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import PIL.Image
import pytest
from PIL import features

from mmchat.errors import MediaError
from mmchat.media import Image
from mmchat.media.image import decode_image, pixels_from_pil

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(im: PIL.Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def decode(data: bytes, **kw: object) -> Image:
    image = decode_image(data, label="photo.png", **kw)
    px = image.pixels
    assert px.dtype == np.uint8 and px.ndim == 3 and px.shape[2] == 3 and px.flags.c_contiguous
    assert image.source == "photo.png"
    return image


def near(pixel: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - colour) <= tol))


def halves(size: tuple[int, int], left: tuple, right: tuple, mode: str = "RGB") -> PIL.Image.Image:
    im = PIL.Image.new(mode, size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


# --- orientation, colour modes, frames -----------------------------------------------------


def test_exif_rotated_jpeg_is_seen_upright() -> None:
    # Stored landscape 120x80 with a red top-left corner; Orientation=6 says "rotate 90° CW to view".
    stored = PIL.Image.new("RGB", (120, 80), BLUE)
    stored.paste(RED, (0, 0, 30, 30))
    exif = stored.getexif()
    exif[0x0112] = 6
    image = decode(encode(stored, "JPEG", exif=exif, quality=95))
    assert (image.width, image.height) == (80, 120)  # portrait, as a phone shows it
    assert near(image.pixels[5, -5], RED, 30)  # stored top-left lands at the top-right
    assert near(image.pixels[5, 5], BLUE, 30)
    assert near(image.pixels[-5, -5], BLUE, 30)


def test_png_alpha_is_flattened_onto_white() -> None:
    im = PIL.Image.new("RGBA", (30, 10), (0, 0, 0, 0))  # clear, with black under the alpha
    im.paste((255, 0, 0, 128), (10, 0, 20, 10))  # half-transparent red
    im.paste((0, 0, 255, 255), (20, 0, 30, 10))  # opaque blue
    px = decode(encode(im, "PNG")).pixels
    assert near(px[5, 5], WHITE, 0)
    assert near(px[5, 15], (255, 127, 127), 2)  # pink, as a browser shows it on white
    assert near(px[5, 25], BLUE, 0)


def test_palette_gif_keeps_its_colours_and_transparency() -> None:
    im = halves((20, 10), RED, GREEN).quantize(4)
    px = decode(encode(im, "GIF")).pixels
    assert near(px[5, 2], RED, 0) and near(px[5, 17], GREEN, 0)
    clear = im.copy()
    clear.info["transparency"] = clear.getpixel((0, 0))  # the red half becomes see-through
    px = decode(encode(clear, "GIF", transparency=clear.getpixel((0, 0)))).pixels
    assert near(px[5, 2], WHITE, 0) and near(px[5, 17], GREEN, 0)


def test_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (4, 1))
    data = encode(PIL.Image.fromarray(ramp), "PNG")
    assert PIL.Image.open(io.BytesIO(data)).mode.startswith("I")
    px = decode(data).pixels
    grey = px[0, :, 0].astype(int)
    assert grey[0] == 0 and grey[-1] == 255 and abs(grey[32] - 132) <= 2  # a ramp, not white
    assert np.all(np.diff(grey) >= 0)
    assert np.array_equal(px[..., 0], px[..., 2])


def test_cmyk_jpeg_colours() -> None:
    im = halves((40, 20), (0, 255, 255, 0), (255, 255, 0, 0), mode="CMYK")  # red | blue
    px = decode(encode(im, "JPEG", quality=95)).pixels
    assert near(px[10, 5], RED, 30) and near(px[10, 35], BLUE, 30)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("L", 100, (100, 100, 100)), ("1", 1, WHITE), ("LA", (0, 255), (0, 0, 0)), ("LA", (0, 0), WHITE)],
)
def test_greyscale_modes_become_rgb(mode: str, value: object, expected: tuple) -> None:
    px = decode(encode(PIL.Image.new(mode, (8, 8), value), "PNG")).pixels
    assert near(px[4, 4], expected, 0)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_gives_the_first_frame(fmt: str) -> None:
    frames = [PIL.Image.new("RGB", (16, 16), c) for c in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    assert PIL.Image.open(io.BytesIO(data)).n_frames == 3
    assert near(decode(data).pixels[8, 8], RED, 4)


def test_webp_with_alpha() -> None:
    im = PIL.Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    im.paste((0, 255, 0, 255), (8, 0, 16, 16))
    px = decode(encode(im, "WEBP", lossless=True)).pixels
    assert near(px[8, 2], WHITE, 0) and near(px[8, 12], GREEN, 0)


def test_heic_round_trip() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    data = encode(halves((64, 32), RED, BLUE), "HEIF", quality=95)
    assert data[4:12] == b"ftypheic"
    px = decode(data).pixels
    assert px.shape == (32, 64, 3)
    assert near(px[16, 8], RED, 40) and near(px[16, 56], BLUE, 40)


def test_avif_round_trip() -> None:
    assert features.check("avif"), "this Pillow cannot read AVIF: install Pillow >= 11.3"
    data = encode(halves((64, 32), RED, BLUE), "AVIF", quality=95)
    assert b"ftypavif" in data[:12]
    px = decode(data).pixels
    assert px.shape == (32, 64, 3)
    assert near(px[16, 8], RED, 40) and near(px[16, 56], BLUE, 40)


# --- size ---------------------------------------------------------------------------------


def test_big_photo_is_scaled_to_the_max_side_keeping_aspect() -> None:
    data = encode(halves((4000, 3000), RED, BLUE), "JPEG", quality=90)
    image = decode(data, max_side=1536)
    assert (image.width, image.height) == (1536, 1152)
    assert near(image.pixels[576, 100], RED, 20) and near(image.pixels[576, 1436], BLUE, 20)


def test_portrait_is_scaled_by_its_height() -> None:
    image = decode(encode(PIL.Image.new("RGB", (300, 900), GREEN), "PNG"), max_side=300)
    assert (image.width, image.height) == (100, 300)


def test_small_images_are_never_upscaled() -> None:
    data = encode(PIL.Image.new("RGB", (100, 50), GREEN), "PNG")
    assert decode(data, max_side=1536).pixels.shape == (50, 100, 3)
    assert decode(data, max_side=None).pixels.shape == (50, 100, 3)


def test_pixel_cap() -> None:
    data = encode(PIL.Image.new("RGB", (200, 100), GREEN), "PNG")
    with pytest.raises(MediaError, match=r"^photo\.png is 200x100 pixels, more than the limit of 10,000: scale"):
        decode(data, max_pixels=10_000)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size (no pixel data): what a decompression bomb looks like up front."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_before_decoding() -> None:
    with pytest.raises(MediaError, match=r"15000x10000 pixels, more than the limit of 100,000,000"):
        decode(_png_header_only(15_000, 10_000))
    with pytest.raises(MediaError, match=r"larger than Pillow's safety limit .* \(a decompression bomb\?\)"):
        decode(_png_header_only(100_000, 100_000), max_pixels=None)


# --- bad data -----------------------------------------------------------------------------


def test_truncated_png() -> None:
    noisy = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noisy, "PNG")
    with pytest.raises(MediaError, match=r"^cannot decode photo\.png as an image .*: check that the file is complete$"):
        decode(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data", [b"this is a text file, not a photo\n" * 5, b"", bytes(100)], ids=["text", "empty", "zeros"]
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(MediaError, match=r"^cannot decode photo\.png as an image: not a format") as info:
        decode(data)
    assert "\n" not in str(info.value)


# --- in-memory images ---------------------------------------------------------------------


def test_pixels_from_pil_matches_a_decoded_file() -> None:
    im = halves((40, 20), (255, 0, 0, 255), (0, 0, 0, 0), mode="RGBA")
    from_memory = pixels_from_pil(im, "clipboard")
    from_file = decode(encode(im, "PNG"))
    assert from_memory.source == "clipboard"
    assert np.array_equal(from_memory.pixels, from_file.pixels)
    assert from_memory.digest() == from_file.digest()
    assert near(from_memory.pixels[10, 30], WHITE, 0)


def test_pixels_from_pil_scales_and_converts() -> None:
    im = PIL.Image.new("P", (3000, 1000))
    image = pixels_from_pil(im, max_side=600)
    assert image.pixels.shape == (200, 600, 3) and image.pixels.flags.c_contiguous
