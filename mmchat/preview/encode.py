"""Pixels -> the bytes a terminal draws them from: kitty graphics, iTerm2 inline images, sixel,
Unicode half-blocks. Pure: no terminal here, so each encoding is tested byte by byte.

Written here rather than taken from a library (README, "Choices"): textual-image has no iTerm2
and no tmux passthrough and writes to sys.__stdout__ itself; term-image has no sixel and pins
Pillow below 11.

Where each format is written down:
- kitty: https://sw.kovidgoyal.net/kitty/graphics-protocol/ (APC `ESC _ G keys ; base64 ESC \\`,
  chunks of at most 4096 base64 bytes, `m=1` on all but the last; f=24 RGB, o=z zlib, a=T
  transmit and show, c/r cells, C=1 the cursor stays, q=2 no replies).
- iTerm2: https://iterm2.com/documentation-images.html (`OSC 1337 ; File=inline=1;size=N;
  width=..;height=.. : base64 BEL`, width and height as N character cells).
- sixel: DEC STD 070 / the VT330-VT340 Programmer Reference, ch. 14, and xterm's ctlseqs:
  `DCS P1;P2;P3 q`, raster attributes `"Pan;Pad;Ph;Pv`, colour `#Pc;2;R;G;B` in percent, data
  characters `?`..`~` (63 + six vertical pixels, the top one the lowest bit), `!n` repeat,
  `$` back to the band's start, `-` next band, ST.
- tmux passes a sequence to the outer terminal inside `DCS tmux; ... ST` with every ESC doubled
  (tmux(1), allow-passthrough).
- half-blocks: U+2580 UPPER HALF BLOCK, foreground = top pixel, background = bottom pixel, SGR
  38;2;r;g;b / 48;2;r;g;b (truecolor) or 38;5;n / 48;5;n (the xterm 256-colour palette).
"""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np

UPPER_HALF = "\u2580"
RESET = "\x1b[0m"
ST = "\x1b\\"
KITTY_CHUNK = 4096  # base64 bytes per kitty escape, as the protocol asks
_CUBE = np.array([0, 95, 135, 175, 215, 255])  # the xterm 256-colour cube's levels
_CHARS = [chr(i) for i in range(128)]
EMPTY = 63  # "?": a sixel with no pixel set


def halfblocks(pixels: np.ndarray, truecolor: bool = True) -> list[str]:
    """Rows of text, two pixel rows per text row (the height must be even); each ends in a reset."""
    h, w = pixels.shape[:2]
    if h % 2:
        raise ValueError("half-blocks need an even number of pixel rows")
    codes = _sgr_colours(pixels, truecolor)
    rows = []
    for y in range(0, h, 2):
        parts, last = [], None
        for x in range(w):
            pair = (codes[y][x], codes[y + 1][x])
            if pair != last:
                parts.append(f"\x1b[38;{pair[0]};48;{pair[1]}m")
                last = pair
            parts.append(UPPER_HALF)
        rows.append("".join(parts) + RESET)
    return rows


def _sgr_colours(pixels: np.ndarray, truecolor: bool) -> list[list[str]]:
    """Each pixel's colour as the SGR parameters after 38; or 48;."""
    if truecolor:
        return [[f"2;{r};{g};{b}" for r, g, b in row] for row in pixels.tolist()]
    return [[f"5;{n}" for n in row] for row in xterm256(pixels).tolist()]


def xterm256(pixels: np.ndarray) -> np.ndarray:
    """The nearest colour of xterm's 256-colour palette (6x6x6 cube or grey ramp) to each pixel."""
    rgb = pixels.astype(np.int32)
    level = np.abs(rgb[..., None] - _CUBE).argmin(-1)  # nearest cube level per channel
    cube = 16 + 36 * level[..., 0] + 6 * level[..., 1] + level[..., 2]
    cube_rgb = _CUBE[level]
    grey_step = np.clip(np.rint((rgb.mean(-1) - 8) / 10), 0, 23).astype(np.int32)
    grey = 8 + 10 * grey_step
    d_cube = ((rgb - cube_rgb) ** 2).sum(-1)
    d_grey = ((rgb - grey[..., None]) ** 2).sum(-1)
    return np.where(d_grey < d_cube, 232 + grey_step, cube)


def kitty(pixels: np.ndarray, cols: int, rows: int, compress: bool = True) -> str:
    """One image shown at the cursor over cols x rows cells; the cursor does not move (C=1)."""
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    keys = f"a=T,f=24,s={w},v={h},c={cols},r={rows},C=1,q=2"
    if compress:
        data, keys = zlib.compress(data, 1), keys + ",o=z"
    payload = base64.b64encode(data).decode("ascii")
    chunks = [payload[i : i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)] or [""]
    out = []
    for i, chunk in enumerate(chunks):
        more = int(i < len(chunks) - 1)
        head = f"{keys},m={more}" if i == 0 else f"m={more}"
        out.append(f"\x1b_G{head};{chunk}{ST}")
    return "".join(out)


def png(pixels: np.ndarray) -> bytes:
    """A PNG of the pixels, quickly (what iTerm2 decodes)."""
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def iterm2(image_file: bytes, cols: int, rows: int) -> str:
    """An image file shown inline over cols x rows cells (iTerm2, WezTerm)."""
    payload = base64.b64encode(image_file).decode("ascii")
    return f"\x1b]1337;File=inline=1;size={len(image_file)};width={cols};height={rows}:{payload}\x07"


def sixel(pixels: np.ndarray, colours: int = 256) -> str:
    """Sixel data with at most `colours` colour registers (VT340: 16; xterm reports its own).

    Each band of six rows is, per colour present in it, one row of sixel characters whose six bits
    are the band's pixels of that colour: each of the six pixel rows sets its bit at its colours'
    rows and its columns in one assignment (a column appears once in a pixel row), rather than
    comparing the band with every colour (1.6x faster on a photo's preview, the same bytes)."""
    h, w = pixels.shape[:2]
    index, palette = _palette(pixels, max(2, min(colours, 256)))
    out = [f'\x1bP0;1;0q"1;1;{w};{h}']
    out += [f"#{i};2;{r};{g};{b}" for i, (r, g, b) in enumerate(_percent(palette))]
    bands = -(-h // 6)
    slot = np.empty(len(palette), dtype=np.intp)  # a colour's row in the band's characters
    columns = np.arange(w)
    for b in range(bands):
        block = index[6 * b : 6 * b + 6]
        present = np.unique(block)
        slot[present] = np.arange(len(present))
        chars = np.full((len(present), w), EMPTY, dtype=np.uint8)  # no pixel of that colour there
        for r, row in enumerate(block):
            chars[slot[row], columns] += np.uint8(1 << r)  # the top row of a band is the lowest bit
        lines = _runs(chars)
        out.append("$".join(f"#{c}{row}" for c, row in zip(present.tolist(), lines)) + ("-" if b < bands - 1 else ""))
    out.append(ST)
    return "".join(out)


def _runs(chars: np.ndarray) -> list[str]:
    """Each row of sixel characters with runs of four or more as `!n` and the character, and
    without its trailing empty sixels (nothing is drawn after a row's last one). The runs are
    found by numpy for all rows at once; Python only joins them."""
    k, w = chars.shape
    flat = chars.ravel()
    starts = np.empty(flat.size, dtype=bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    starts[::w] = True  # every row starts a run
    first = np.flatnonzero(starts)
    lengths = np.diff(np.append(first, flat.size)).tolist()
    values = flat[first].tolist()
    ends = np.searchsorted(first, np.arange(1, k + 1) * w).tolist()  # each row's runs end before this
    tokens = [_CHARS[v] * n if n < 4 else f"!{n}{_CHARS[v]}" for n, v in zip(lengths, values)]
    rows, start = [], 0
    for end in ends:
        rows.append("".join(tokens[start : end - 1 if values[end - 1] == EMPTY else end]))
        start = end
    return rows


def _palette(pixels: np.ndarray, colours: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's register and the registers' RGB, numbered in the order colours first appear."""
    import PIL.Image

    im = PIL.Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    few = im.getcolors(colours) is not None  # exact colours when there are few enough
    method = PIL.Image.Quantize.MEDIANCUT if few else PIL.Image.Quantize.FASTOCTREE
    quantized = im.quantize(colors=colours, method=method, dither=PIL.Image.Dither.NONE)
    index = np.asarray(quantized, dtype=np.int16)
    table = np.array(quantized.getpalette()[: 3 * 256], dtype=np.int32).reshape(-1, 3)
    used, first = np.unique(index, return_index=True)
    order = used[np.argsort(first)]
    renumber = np.zeros(max(int(index.max()) + 1, 1), dtype=np.int16)
    renumber[order] = np.arange(len(order), dtype=np.int16)
    return renumber[index], table[order]


def _percent(palette: np.ndarray) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in row) for row in np.rint(palette * 100 / 255).astype(int)]


def tmux_passthrough(sequence: str) -> str:
    """A sequence for the terminal outside tmux (tmux must allow passthrough)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + ST
