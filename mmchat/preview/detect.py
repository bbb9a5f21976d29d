"""Which picture protocol a terminal speaks, asked of the terminal itself, never guessed.

One write asks everything at once and the terminal's answer to the last question (primary
device attributes, which every VT-style terminal answers) ends the wait; a terminal that says
nothing within the timeout gets half-blocks, which every terminal draws.

- kitty graphics: a 1x1 query image (`a=q`); a terminal that has the protocol answers
  `ESC _ G i=31 ; OK ESC \\` before the DA1 reply (the detection kitty's documentation gives:
  https://sw.kovidgoyal.net/kitty/graphics-protocol/#querying-support-and-available-transmission-mediums).
- iTerm2 inline images: XTVERSION (`CSI > 0 q`, xterm's ctlseqs) names the terminal,
  `DCS > | iTerm2 3.5.0 ST` or `DCS > | WezTerm 20240203-... ST`; no environment variable is
  trusted, since TERM_PROGRAM is inherited by every program started from that terminal.
- sixel: a 4 among the DA1 reply's attributes (`CSI ? 63 ; 1 ; 2 ; 4 ; ... c`, VT330/VT340 and
  xterm -ti vt340); its colour registers from XTSMGRAPHICS (`CSI ? 1 ; 1 ; 0 S` -> `CSI ? 1 ; 0 ; N S`).
- cell size in pixels: `CSI 16 t` -> `CSI 6 ; height ; width t`, when the window size ioctl
  does not say.
- inside tmux, tmux answers these itself: sixel when tmux draws it (3.4 built with sixel),
  iTerm2's images passed through (DCS tmux;) when tmux allows passthrough and names the
  outer terminal iTerm2 or WezTerm; kitty's placements do not follow tmux's panes, so kitty
  under tmux gets half-blocks.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Literal

from .. import config

if TYPE_CHECKING:
    from ..env import Terminal

Protocol = Literal["kitty", "iterm2", "sixel", "halfblocks"]

KITTY_QUERY = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
XTVERSION = "\x1b[>0q"
CELL_SIZE = "\x1b[16t"
SIXEL_REGISTERS = "\x1b[?1;1;0S"  # xterm 379 answers only with the third parameter there
DA1 = "\x1b[c"
QUERY = KITTY_QUERY + XTVERSION + CELL_SIZE + SIXEL_REGISTERS + DA1

_KITTY_OK = re.compile(rb"\x1b_G(?:[^;\x1b]*,)?i=31(?:,[^;\x1b]*)?;OK\x1b\\")  # other keys may come back too
_VERSION = re.compile(rb"\x1bP>\|([^\x1b\x07]*)(?:\x1b\\|\x07)")
_CELL = re.compile(rb"\x1b\[6;(\d+);(\d+)t")
_REGISTERS = re.compile(rb"\x1b\[\?1;0;(\d+)S")
_DA1 = re.compile(rb"\x1b\[\?([\d;]*)c")
_INLINE_IMAGES = ("iterm2", "wezterm")  # XTVERSION names of terminals with iTerm2's inline images


@dataclasses.dataclass(frozen=True)
class Replies:
    """What a terminal said to QUERY."""

    kitty: bool = False
    version: str = ""  # XTVERSION's text: "XTerm(379)", "iTerm2 3.5.0", "tmux 3.4"
    cell: tuple[int, int] | None = None  # (width, height) in pixels
    registers: int | None = None
    attributes: tuple[int, ...] | None = None  # DA1; None when it never came


def parse(reply: bytes) -> Replies:
    """The answers in a terminal's reply bytes (in any order, with anything else around them)."""
    version = _VERSION.search(reply)
    cell = _CELL.search(reply)
    registers = _REGISTERS.search(reply)
    da1 = _DA1.search(reply)
    return Replies(
        kitty=bool(_KITTY_OK.search(reply)),
        version=version.group(1).decode("utf-8", "replace") if version else "",
        cell=(int(cell.group(2)), int(cell.group(1))) if cell and int(cell.group(1)) and int(cell.group(2)) else None,
        registers=int(registers.group(1)) if registers else None,
        attributes=tuple(int(a) for a in da1.group(1).split(b";") if a) if da1 else None,
    )


def answered(reply: bytes) -> bool:
    """The DA1 reply came: every answer before it is in."""
    return _DA1.search(reply) is not None


#: every form a reply to QUERY takes (kitty's APC, XTVERSION's DCS, the CSI replies), as it arrives
#: on the terminal's input mixed with whatever keys the user types meanwhile
_ANY_REPLY = re.compile(
    rb"\x1b_G[^\x1b]*\x1b\\"  # kitty graphics
    rb"|\x1bP[^\x1b\x07]*(?:\x1b\\|\x07)"  # XTVERSION (and any DCS reply)
    rb"|\x1b\[6;\d+;\d+t"  # cell size
    rb"|\x1b\[\?\d+;\d+(?:;\d+)*S"  # XTSMGRAPHICS
    rb"|\x1b\[\?[\d;]*c"  # DA1
)
#: the start of a reply cut by a read, at the end of what has come so far
_REPLY_START = re.compile(rb"\x1b(?:_(?:G[^\x1b]*\x1b?)?|P[^\x1b\x07]*\x1b?|\[(?:6(?:;[\d;]*)?|\?[\d;]*)?)?$")


def split_typed(data: bytes) -> tuple[bytes, bytes]:
    """(the terminal's replies, the keys the user typed) in bytes read while waiting for an answer:
    the keys are typed-ahead input for the prompt, in order, never an answer's bytes."""
    replies = b"".join(m.group(0) for m in _ANY_REPLY.finditer(data))
    return replies, _ANY_REPLY.sub(b"", data)


class LateReplies:
    """Takes a reply that comes after the wait gave up out of the input, so a slow terminal's answer
    never turns into typed text; holds a reply cut between two reads until the rest comes."""

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """The typed keys in `data`; a possible reply's start at its end is held."""
        data = _ANY_REPLY.sub(b"", self._held + data)
        start = _REPLY_START.search(data)
        cut = start.start() if start and start.group(0) else len(data)
        self._held = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        """What is held, as keys (nothing more came: it was an Escape or the start of a key's sequence)."""
        held, self._held = self._held, b""
        return held


@dataclasses.dataclass(frozen=True)
class Graphics:
    """How pictures are drawn on one terminal."""

    protocol: Protocol = "halfblocks"
    truecolor: bool = True  # half-blocks: 24-bit colour, else the 256-colour palette
    cell: tuple[int, int] = config.DEFAULT_PREVIEW_CELL  # a cell's (width, height) in pixels
    registers: int = 256  # sixel colour registers
    tmux: bool = False  # wrap in tmux's passthrough
    seen: str = ""  # what the terminal said, for `-v` and bug reports

    @property
    def cell_pixels(self) -> tuple[int, int]:
        """Pixels per cell as the picture is encoded: half-blocks are 1 wide and 2 high."""
        return (1, 2) if self.protocol == "halfblocks" else self.cell


def choose(
    replies: Replies,
    *,
    truecolor: bool,
    cell: tuple[int, int] | None = None,
    tmux: bool = False,
    passthrough: bool = False,
    outer: str = "",
) -> Graphics:
    """The best protocol the replies prove; half-blocks when they prove none."""
    size = replies.cell or cell or config.DEFAULT_PREVIEW_CELL
    seen = _seen(replies)
    base = dict(truecolor=truecolor, cell=size, seen=seen)
    sixel = replies.attributes is not None and 4 in replies.attributes
    if tmux:
        if sixel:  # tmux itself draws it
            return Graphics("sixel", registers=replies.registers or 256, **base)
        if passthrough and outer.lower().startswith(_INLINE_IMAGES):
            return Graphics("iterm2", tmux=True, **{**base, "seen": f"{seen}, outside tmux: {outer}"})
        return Graphics("halfblocks", **base)
    if replies.version.lower().startswith(
        _INLINE_IMAGES
    ):  # WezTerm answers kitty's query too: its iTerm2 images are whole
        return Graphics("iterm2", **base)
    if replies.kitty:
        return Graphics("kitty", **base)
    if sixel:
        return Graphics("sixel", registers=replies.registers or 256, **base)
    return Graphics("halfblocks", **base)


def _seen(replies: Replies) -> str:
    parts = [
        f"version {replies.version!r}" if replies.version else "",
        "kitty graphics" if replies.kitty else "",
        f"DA1 {';'.join(map(str, replies.attributes))}" if replies.attributes is not None else "no DA1 reply",
    ]
    return ", ".join(p for p in parts if p)


def detect(terminal: Terminal, timeout: float = config.DEFAULT_PREVIEW_QUERY_TIMEOUT) -> Graphics:
    """Ask the terminal (once per process is enough: the caller keeps the answer). Keys typed while
    it is asked are kept on the terminal (`Terminal.typed`) for the prompt; without an answer, the
    terminal is marked so that a late one is taken out of its input (`Terminal.late_replies`)."""
    reply, typed = split_typed(terminal.query(QUERY.encode(), answered, timeout))
    terminal.typed += typed
    replies = parse(reply)
    if terminal.asked and replies.attributes is None:
        terminal.late_replies = LateReplies()
    passthrough, outer = (
        terminal.tmux_passthrough() if terminal.tmux and 4 not in (replies.attributes or ()) else (False, "")
    )
    return choose(
        replies,
        truecolor=terminal.truecolor,
        cell=terminal.cell_pixels(),
        tmux=terminal.tmux,
        passthrough=passthrough,
        outer=outer,
    )
