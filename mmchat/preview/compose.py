"""What the model gets, laid out for a terminal: pure numpy and Pillow, no terminal here.

An image is shown as decoded (upright, capped) and scaled into a box of text rows; a video as
a contact sheet of the frames that were sampled, each under its `[mm:ss]` stamp; a document's
pages as a strip of the page images; a sound as one line of block characters over its whole
length, the part that is sent drawn and the rest dotted. Each comes with one caption line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ..engine.base import MediaCost
from ..engine.layout import Unchanged, skipped_frames
from ..media import Audio, Image

BARS = "▁▂▃▄▅▆▇█"
OUTSIDE = "·"  # the part of a recording that is not sent
GAP = (0, 0, 0)  # between thumbnails


@dataclasses.dataclass(frozen=True)
class Picture:
    """Pixels to draw over `cols` x `rows` text cells."""

    pixels: np.ndarray
    cols: int
    rows: int


@dataclasses.dataclass(frozen=True)
class Line:
    """A line of text; `marked` is the span [start, end) drawn as the part that is sent."""

    text: str
    marked: tuple[int, int] | None = None


Shown = Picture | Line


def fit(width: int, height: int, rows: int, max_cols: int, cell: tuple[int, int]) -> tuple[int, int]:
    """The cells (cols, rows) a width x height picture takes at `rows` rows, narrowed to `max_cols`."""
    cw, ch = cell
    cols = max(1, round(rows * ch * width / (height * cw)))
    if cols > max_cols:
        cols = max(1, max_cols)
        rows = max(1, round(cols * cw * height / (width * ch)))
    return cols, rows


def scaled(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Box-filtered to width x height: every source pixel counts, so thin lines do not vanish."""
    import PIL.Image

    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    im = PIL.Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    return np.asarray(im.resize((width, height), PIL.Image.Resampling.BOX, reducing_gap=3.0))


def picture(pixels: np.ndarray, cols: int, rows: int, cell: tuple[int, int]) -> Picture:
    """Pixels scaled to fill cols x rows cells of `cell` pixels (sixel bands need heights in sixes)."""
    cw, ch = cell
    height = rows * ch
    if ch > 2:
        height -= height % 6 if height >= 6 else 0
    return Picture(scaled(pixels, cols * cw, max(1, height)), cols, rows)


def image_view(image: Image, rows: int, max_cols: int, cell: tuple[int, int]) -> list[Shown]:
    cols, rows = fit(image.width, image.height, rows, max_cols, cell)
    return [picture(image.pixels, cols, rows, cell)]


def sheet(
    images: Sequence[Image], labels: Sequence[str], rows: int, max_cols: int, cell: tuple[int, int], max_items: int
) -> list[Shown]:
    """Thumbnails in rows of a grid, each grid row a picture with a line of labels under it:
    a video's frames and their stamps, a document's pages and their numbers."""
    picked = spread(len(images), max_items)
    images, labels = [images[i] for i in picked], [labels[i] for i in picked]
    if not images:
        return []
    w, h = images[0].width, images[0].height
    best = None  # the grid whose thumbnails are largest within `rows` (a label line under each grid row)
    for grid_rows in range(1, len(images) + 1):
        per_row = math.ceil(len(images) / grid_rows)
        budget = rows // grid_rows - 1
        if budget < 2 and best is not None:
            break
        t_cols, t_rows = fit(w, h, max(1, budget), max(1, (max_cols + 1) // per_row - 1), cell)
        if best is None or t_cols * t_rows > best[1] * best[2]:
            best = (per_row, t_cols, t_rows)
    assert best is not None
    per_row, t_cols, t_rows = best
    out: list[Shown] = []
    for start in range(0, len(images), per_row):
        group = images[start : start + per_row]
        thumbs = [picture(im.pixels, t_cols, t_rows, cell).pixels for im in group]
        out.append(Picture(_side_by_side(thumbs, cell[0]), len(group) * (t_cols + 1) - 1, t_rows))
        out.append(
            Line("".join(label[:t_cols].ljust(t_cols + 1) for label in labels[start : start + per_row]).rstrip())
        )
    return out


def spread(n: int, most: int) -> list[int]:
    """At most `most` indexes of n, evenly spread, first and last kept."""
    if n <= most:
        return list(range(n))
    if most <= 1:
        return [0]
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _side_by_side(thumbs: list[np.ndarray], gap: int) -> np.ndarray:
    height = max(t.shape[0] for t in thumbs)
    parts = []
    for i, t in enumerate(thumbs):
        if i:
            parts.append(np.full((height, gap, 3), GAP, dtype=np.uint8))
        if t.shape[0] < height:
            t = np.concatenate([t, np.full((height - t.shape[0], t.shape[1], 3), GAP, dtype=np.uint8)])
        parts.append(t)
    return np.concatenate(parts, axis=1)


def video_frames(segments: Sequence[object]) -> tuple[list[Image], list[str], float]:
    """A laid-out video's frames, the stamp each stands under ('' for the second of a pair), and its seconds of sound."""
    frames, labels, sound, stamp = [], [], 0.0, ""
    for s in segments:
        if isinstance(s, Unchanged):
            continue  # frames not sent: the caption counts them
        if isinstance(s, str):
            stamp = s  # "[00:05]", as the model reads it
        elif isinstance(s, Image):
            frames.append(s)
            labels.append(stamp)
            stamp = ""
        elif isinstance(s, Audio):
            sound += s.duration
    return frames, labels, sound


def waveform(audio: Audio, width: int, start: float = 0.0, total: float | None = None) -> Line:
    """One line over the whole recording (`total` seconds, when known): the sent part as bars of
    its loudness, the rest as dots."""
    width = max(8, width)
    total = max(total or 0.0, start + audio.duration)
    first = min(width - 1, int(width * start / total)) if total else 0
    last = max(first + 1, min(width, round(width * (start + audio.duration) / total))) if total else width
    samples = np.abs(audio.samples)
    n = last - first
    if len(samples) == 0:
        peaks = np.zeros(n)
    else:
        edges = np.linspace(0, len(samples), n + 1).astype(int)
        peaks = np.array([samples[a:b].max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    top = float(peaks.max()) if peaks.size else 0.0
    levels = np.zeros(n, dtype=int) if top <= 0 else np.minimum(len(BARS) - 1, (peaks / top * len(BARS)).astype(int))
    bars = "".join(BARS[i] for i in levels)
    return Line(OUTSIDE * first + bars + OUTSIDE * (width - last), (first, last))


def clock(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def cost_text(costs: Sequence[MediaCost] | None) -> str:
    """'256 tokens · from the cache' / '~256 tokens' (a server's estimate) / 'tokens not counted yet'."""
    if costs is None:
        return "tokens not counted yet"
    tokens = sum(c.tokens for c in costs)
    counted = f"{tokens:,} token{'s' * (tokens != 1)}"
    if not all(c.exact for c in costs):
        return f"~{counted}"
    return f"{counted} · " + ("from the cache" if costs and all(c.cached for c in costs) else "to encode")


def caption(
    label: str,
    kind: str,
    segments: Sequence[object],
    costs: Sequence[MediaCost] | None,
    *,
    start: float = 0.0,
    total: float | None = None,
    cost: str | None = None,
) -> str:
    """The one line under a preview: name, what is sent, its cost, whether it is cached."""
    media = [s for s in segments if isinstance(s, (Image, Audio))]
    if kind == "image" and media and isinstance(media[0], Image):
        what = f"{media[0].width}×{media[0].height} px"
    elif kind == "video":
        frames, labels, sound = video_frames(segments)
        stamps = [lb.strip("[]") for lb in labels if lb]
        span = f", {stamps[0]}–{stamps[-1]}" if len(stamps) > 1 else ""
        size = f" of {frames[0].width}×{frames[0].height} px" if frames else ""
        skipped = skipped_frames(segments)
        what = (
            f"{len(frames)} frame{'s' * (len(frames) != 1)}{size}{span}"
            + (f" ({skipped} unchanged, skipped)" if skipped else "")
            + (f" + {sound:.1f} s of sound" if sound else "")
        )
    elif media and isinstance(media[0], Audio):
        a = media[0]
        part = (
            f"{clock(start)}–{clock(start + a.duration)} of {clock(total)}"
            if total and total > a.duration + 0.5
            else clock(a.duration)
        )
        what = f"{part} at {a.sample_rate / 1000:g} kHz"
    else:
        what = kind
    return f"{label} · {what} · {cost if cost is not None else cost_text(costs)}"
