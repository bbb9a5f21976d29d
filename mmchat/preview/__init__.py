"""See what the model sees: attached media drawn in the terminal as the model gets them.

`Previewer.for_stream` decides whether a stream gets previews at all (a terminal, not turned
off, not a pipe, never `--json`); `show` draws one medium (picture, contact sheet or waveform)
and its caption line. The terminal's protocol is asked once, on the first picture
(detect.py); the pixels are laid out in compose.py and encoded in encode.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import config
from ..engine.base import MediaCost
from ..errors import SourceError
from ..inputs.part import Location, locate
from ..media import Audio, Image
from . import compose, encode
from .detect import Graphics, detect

if TYPE_CHECKING:
    from ..env import Environment, Terminal

__all__ = ["Graphics", "Previewer", "label_of", "part_extent"]

DIM, CYAN, RESET = "\x1b[2m", "\x1b[36m", "\x1b[0m"
Costs = Sequence[MediaCost] | Callable[[], Sequence[MediaCost] | None] | None


_PAGE = re.compile(r"\[page (\d+) of ")  # the line inputs/pdf.py puts before each page


class Previewer:
    """Draws media on one terminal stream. `pictures=False` (NO_COLOR, TERM=dumb) keeps the caption only."""

    def __init__(
        self,
        file: IO[str],
        terminal: Terminal | None = None,
        *,
        rows: int = config.DEFAULT_PREVIEW_ROWS,
        pictures: bool = True,
        graphics: Graphics | None = None,
        columns: int | None = None,
    ):
        self.file, self.terminal, self.rows, self.pictures = file, terminal, rows, pictures
        self._graphics, self._columns = graphics, columns

    @classmethod
    def for_stream(
        cls,
        env: Environment,
        name: str,
        *,
        setting: bool | None,
        default: bool,
        no_color: bool = False,
        rows: int = config.DEFAULT_PREVIEW_ROWS,
    ) -> Previewer | None:
        """A previewer on stream `name` ("stdout" or "stderr"), or None: previews off (`setting`
        False, or None and not on by `default`), or the stream is no terminal."""
        terminal = env.terminal(name)
        if not (default if setting is None else setting) or terminal is None:
            return None
        return cls(getattr(env, name), terminal, rows=rows, pictures=env.colour(no_color) and not terminal.dumb)

    @property
    def graphics(self) -> Graphics:
        """The terminal's protocol, asked once."""
        if self._graphics is None:
            self._graphics = detect(self.terminal) if self.terminal is not None else Graphics()
        return self._graphics

    @property
    def columns(self) -> int:
        if self._columns is not None:
            return self._columns
        return self.terminal.size()[0] if self.terminal is not None else 80

    # -- showing -----------------------------------------------------------------------

    def show(
        self,
        label: str,
        kind: str,
        segments: Sequence[Any],
        costs: Costs,
        *,
        start: float = 0.0,
        total: float | None = None,
        cost: str | None = None,
    ) -> None:
        """One medium as the model gets it (its decoded segments), then its caption line. `costs`
        may be a function, asked once the picture is made (an encode counting them meanwhile);
        `cost` says the cost in other words (as the log kept it). A PDF's pages come as a strip."""
        pages = [s for s in segments if isinstance(s, Image)]
        numbers = [int(m.group(1)) for s in segments if isinstance(s, str) and (m := _PAGE.match(s))]
        if kind == "image" and pages and len(numbers) == len(pages) and cost is None:
            self.pages(label, pages, numbers, costs() if callable(costs) else costs)
            return
        out = []
        if self.pictures:
            for item in self.layout(kind, segments, start, total):
                out.append(self.draw(item))
        if callable(costs):
            costs = costs()
        line = compose.caption(label, kind, segments, costs, start=start, total=total, cost=cost)
        frames = sum(1 for s in segments if isinstance(s, Image)) if kind == "video" else 0
        if self.pictures and frames > config.DEFAULT_PREVIEW_MAX_FRAMES:
            line += f" · {len(compose.spread(frames, config.DEFAULT_PREVIEW_MAX_FRAMES))} of them drawn"
        out.append(f"{DIM}{line}{RESET}\n" if self.pictures else line + "\n")
        self.file.write("".join(out))
        self.file.flush()

    def layout(
        self, kind: str, segments: Sequence[Any], start: float = 0.0, total: float | None = None
    ) -> list[compose.Shown]:
        width = max(8, self.columns - 1)  # the last column would wrap
        cell = self.graphics.cell_pixels
        media = [s for s in segments if isinstance(s, (Image, Audio))]
        if kind == "video":
            frames, labels, _ = compose.video_frames(segments)
            return compose.sheet(frames, labels, self.rows, width, cell, config.DEFAULT_PREVIEW_MAX_FRAMES)
        if media and isinstance(media[0], Image):
            return compose.image_view(media[0], self.rows, width, cell)
        if media and isinstance(media[0], Audio):
            return [compose.waveform(media[0], min(width, 72), start, total)]
        return []

    def pages(
        self, label: str, pages: Sequence[Image], numbers: Sequence[int], costs: Sequence[MediaCost] | None
    ) -> None:
        """A document's chosen pages as a strip, each under its page number (a PDF, as inputs/pdf.py gives it)."""
        out = []
        if self.pictures:
            strip = compose.sheet(
                pages,
                [f"p. {n}" for n in numbers],
                self.rows,
                max(8, self.columns - 1),
                self.graphics.cell_pixels,
                config.DEFAULT_PREVIEW_MAX_FRAMES,
            )
            out += [self.draw(item) for item in strip]
        first = pages[0] if pages else None
        size = f" of {first.width}×{first.height} px" if first is not None else ""
        line = f"{label} · {len(pages)} page{'s' * (len(pages) != 1)}{size} · {compose.cost_text(costs)}"
        out.append(f"{DIM}{line}{RESET}\n" if self.pictures else line + "\n")
        self.file.write("".join(out))
        self.file.flush()

    def draw(self, item: compose.Shown) -> str:
        """What to write for one picture or line, the cursor left at the start of the next line."""
        if isinstance(item, compose.Line):
            if item.marked is None:
                return f"{DIM}{item.text}{RESET}\n"
            a, b = item.marked
            return f"{DIM}{item.text[:a]}{RESET}{CYAN}{item.text[a:b]}{RESET}{DIM}{item.text[b:]}{RESET}\n"
        g = self.graphics
        if g.protocol == "halfblocks":
            return "".join(row + "\n" for row in encode.halfblocks(item.pixels, g.truecolor))
        if g.protocol == "kitty":
            sequence = encode.kitty(item.pixels, item.cols, item.rows)
        elif g.protocol == "iterm2":
            sequence = encode.iterm2(encode.png(item.pixels), item.cols, item.rows)
        else:
            sequence = encode.sixel(item.pixels, g.registers)
        if g.tmux:
            sequence = encode.tmux_passthrough(sequence)
        # room first (the screen scrolls as text does), then back up to draw in it, then below it again
        return "\n" * item.rows + f"\x1b7\x1b[{item.rows}A\r" + sequence + "\x1b8"


def label_of(where: Location | str) -> str:
    """What a caption calls a medium: a file's name, a URL's last part, or 'inline' for data."""
    if isinstance(where, str):
        try:
            where = locate(where)
        except SourceError:  # not a URL mmchat reads: the name as it is
            return where
    if where.scheme == "data":
        return "inline " + where.text[5:].split(";", 1)[0].split(",", 1)[0]
    if where.scheme == "stdin":
        return "standard input"
    tail = where.text.split("?", 1)[0].rstrip("/")
    pages = f"#page={where.pages}" if where.pages else ""
    return (Path(tail).name or where.text) + pages


def part_extent(part: Any) -> tuple[float, float | None]:
    """Where a sound part (a messages.MediaPart) starts and how long its whole recording is
    (None: unknown), so the waveform can mark the part that is sent; the length is read from the
    file's headers."""
    if part.kind != "audio" or (part.options.get("start") is None and part.options.get("end") is None):
        return 0.0, None
    from ..media.probe import sound_seconds
    from ..values import parse_segment

    start, _ = parse_segment(part.options.get("start"), part.options.get("end"), "audio")
    path = part.location.path
    return start or 0.0, sound_seconds(path) if path is not None and path.is_file() else None
