"""An SVG drawing becomes pixels, drawn at the size the model takes, never sent as its XML.

resvg (through resvg-py's abi3 wheels: Rust, no system library such as cairo) draws it. References
to other files (`<image href="/home/me/secret.png">`, which resvg would read from disk) are taken
out first, so a drawing from a URL or a client can only show what it carries itself (data: URLs
and its own #fragments).
"""

from __future__ import annotations

import re

from mmchat.config import DEFAULT_IMAGE_MAX_SIDE
from mmchat.errors import MediaError
from mmchat.media import Image

_OUTSIDE_REFERENCE = re.compile(r"""((?:xlink:)?href\s*=\s*)(["'])(?!\s*(?:data:|#))[^"']*\2""", re.IGNORECASE)


def draw_svg(data: bytes, *, label: str, max_side: int | None = DEFAULT_IMAGE_MAX_SIDE) -> Image:
    """The drawing with its long side at `max_side` pixels (its transparency on white, as a browser shows it)."""
    import resvg_py

    from .image import decode_image

    text = _OUTSIDE_REFERENCE.sub(r"\1\2\2", data.decode("utf-8-sig", "replace"))
    side = max_side or DEFAULT_IMAGE_MAX_SIDE
    try:
        png = resvg_py.svg_to_bytes(svg_string=text, width=side)
    except (ValueError, RuntimeError) as e:
        raise MediaError(f"{label} is an SVG drawing resvg cannot draw ({e}): check the file") from None
    return decode_image(bytes(png), label=label, max_side=side)  # the long side may be the height
