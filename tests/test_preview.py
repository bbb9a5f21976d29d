"""Previews, without a terminal: the encodings byte by byte, detection against terminals' own
replies, and the layout of what the model gets (pictures, contact sheets, waveforms, captions).

The expected bytes are written from the protocols' own documents (cited in each test), not
from mmchat's code; the replies are what real terminals answer (cited or recorded).
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from mmchat.engine.base import MediaCost
from mmchat.env import Terminal
from mmchat.media import Audio, Image
from mmchat.preview import Graphics, Previewer, compose, encode
from mmchat.preview.detect import QUERY, answered, choose, detect, parse
from tests.support.helpers import Scripted

RED, BLUE = (255, 0, 0), (0, 0, 255)
#: 2x2: red left column, blue right column
LEFT_RED = np.array([[RED, BLUE], [RED, BLUE]], dtype=np.uint8)
#: 2x2: red top row, blue bottom row
TOP_RED = np.array([[RED, RED], [BLUE, BLUE]], dtype=np.uint8)


# -- the encodings, byte by byte -------------------------------------------------------------


def test_half_blocks_in_truecolor_put_the_top_pixel_in_front_and_the_bottom_behind():
    # U+2580 UPPER HALF BLOCK: its glyph is the foreground colour on top, the background below;
    # SGR 38;2;R;G;B and 48;2;R;G;B (ITU T.416 direct colour, as xterm's ctlseqs give it)
    assert encode.halfblocks(LEFT_RED) == ["\x1b[38;2;255;0;0;48;2;255;0;0m▀\x1b[38;2;0;0;255;48;2;0;0;255m▀\x1b[0m"]
    # two equal cells in a row share one SGR
    assert encode.halfblocks(TOP_RED) == ["\x1b[38;2;255;0;0;48;2;0;0;255m▀▀\x1b[0m"]


def test_half_blocks_in_256_colours_use_xterms_palette():
    # xterm's 256 colours: 16 + 36 r + 6 g + b over the levels 0,95,135,175,215,255 (256colres.pl);
    # pure red is 196, pure blue 21; greys 232..255 are 8 + 10 n
    assert encode.halfblocks(LEFT_RED, truecolor=False) == ["\x1b[38;5;196;48;5;196m▀\x1b[38;5;21;48;5;21m▀\x1b[0m"]
    grey = np.full((2, 1, 3), 128, dtype=np.uint8)
    assert encode.halfblocks(grey, truecolor=False) == ["\x1b[38;5;244;48;5;244m▀\x1b[0m"]  # 8 + 10*12 = 128


def test_sixel_of_two_by_two():
    # DCS P1;P2;P3 q, raster attributes "1;1;2;2 (aspect 1:1, 2x2 pixels), two colour registers in
    # RGB percent (#Pc;2;R;G;B); a sixel is 63 + its six pixels, the top one the lowest bit:
    # column 0 has rows 0 and 1 set -> 63 + 3 = 'B', an empty column is '?'. '$' returns to the
    # band's start for the next colour; ST ends it (VT330/VT340 Programmer Reference, ch. 14).
    assert encode.sixel(LEFT_RED) == '\x1bP0;1;0q"1;1;2;2#0;2;100;0;0#1;2;0;0;100#0B$#1?B\x1b\\'
    # top row red (bit 1 -> '@'), bottom row blue (bit 2 -> 'A')
    assert encode.sixel(TOP_RED) == '\x1bP0;1;0q"1;1;2;2#0;2;100;0;0#1;2;0;0;100#0@@$#1AA\x1b\\'


def test_sixel_repeats_and_bands():
    five = np.full((1, 5, 3), RED, dtype=np.uint8)
    assert encode.sixel(five) == '\x1bP0;1;0q"1;1;5;1#0;2;100;0;0#0!5@\x1b\\'  # !5@: five of '@'
    tall = np.full((7, 1, 3), BLUE, dtype=np.uint8)  # six rows fill a band ('~' = 63 + 63), '-' starts the next
    assert encode.sixel(tall) == '\x1bP0;1;0q"1;1;1;7#0;2;0;0;100#0~-#0@\x1b\\'


def test_sixel_stays_within_the_terminals_colour_registers():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    data = encode.sixel(noise, colours=16)
    registers = {int(n) for n in re.findall(r"#(\d+);2;", data)}
    assert registers and max(registers) < 16


def test_kitty_of_two_by_two():
    # APC G a=T (transmit and show) f=24 (RGB) s,v (pixels) c,r (cells) C=1 (cursor stays) q=2 (no
    # replies) m=0 (last chunk); payload: base64 of the 12 RGB bytes (kitty graphics protocol)
    rgb = bytes([255, 0, 0, 0, 0, 255] * 2)
    assert base64.b64encode(rgb) == b"/wAAAAD//wAAAAD/"
    assert (
        encode.kitty(LEFT_RED, 2, 1, compress=False)
        == "\x1b_Ga=T,f=24,s=2,v=2,c=2,r=1,C=1,q=2,m=0;/wAAAAD//wAAAAD/\x1b\\"
    )


def test_kitty_sends_a_large_image_in_chunks_of_4096():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    data = encode.kitty(pixels, 8, 3)
    escapes = data.split("\x1b\\")[:-1]
    assert len(escapes) > 1 and all(e.startswith("\x1b_G") for e in escapes)
    heads = [e[3:].split(";", 1) for e in escapes]
    assert heads[0][0] == "a=T,f=24,s=80,v=60,c=8,r=3,C=1,q=2,o=z,m=1"  # o=z: zlib (RFC 1950)
    assert [h[0] for h in heads[1:]] == ["m=1"] * (len(heads) - 2) + ["m=0"]  # later chunks carry only m
    assert all(len(h[1]) <= 4096 for h in heads)
    assert zlib.decompress(base64.b64decode("".join(h[1] for h in heads))) == pixels.tobytes()


def test_iterm2_of_two_by_two():
    # OSC 1337 ; File=inline=1;size=BYTES;width=N;height=N : base64 of an image file, BEL
    # (iTerm2's "Inline Images Protocol": width and height in character cells)
    data = encode.iterm2(encode.png(LEFT_RED), 2, 1)
    head, _, payload = data.partition(":")
    file = base64.b64decode(payload.rstrip("\x07"))
    assert data.endswith("\x07")
    assert head == f"\x1b]1337;File=inline=1;size={len(file)};width=2;height=1"
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(file)).convert("RGB")), LEFT_RED)


def test_tmux_passthrough_doubles_every_escape():
    # tmux(1), allow-passthrough: "\ePtmux;" + the sequence with each ESC doubled + ST
    assert encode.tmux_passthrough("\x1b]1337;File=:QQ==\x07") == "\x1bPtmux;\x1b\x1b]1337;File=:QQ==\x07\x1b\\"


# -- detection, against the terminals' own replies --------------------------------------------

# recorded here from xterm 379 (Debian 12) started as `xterm -ti vt340`, answering QUERY
XTERM_VT340 = b"\x1bP>|XTerm(379)\x1b\\\x1b[?1;0;1024S\x1b[?63;1;2;4;6;9;15;16;22;28c"
# the same xterm with its default terminal id: no 4, no sixel
XTERM_PLAIN = b"\x1bP>|XTerm(379)\x1b\\\x1b[?64;1;2;6;9;15;16;17;18;21;22;28c"
# kitty: the graphics answer as its protocol documents it (other keys may come back with it),
# DA1 as kitty's screen.c writes it; kitty does not answer XTVERSION with its name everywhere
KITTY = b"\x1b_Gi=31;OK\x1b\\\x1b[?62;c"
KITTY_WITH_KEYS = b"\x1b_Gi=31,I=0;OK\x1b\\\x1b[?62;c"
# iTerm2 3.5 answers XTVERSION with its name and version, and DA1 with 4 (it draws sixel too)
ITERM2 = b"\x1bP>|iTerm2 3.5.0\x1b\\\x1b[?62;4c"
# recorded here from tmux 3.3a (built without sixel): tmux answers itself
TMUX = b"\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c"


@pytest.mark.parametrize(
    "reply, protocol",
    [
        (XTERM_VT340, "sixel"),
        (XTERM_PLAIN, "halfblocks"),
        (KITTY, "kitty"),
        (KITTY_WITH_KEYS, "kitty"),
        (ITERM2, "iterm2"),
        (b"\x1b_Gi=31;ENOTSUPPORTED:\x1b\\\x1b[?62;c", "halfblocks"),
        (b"", "halfblocks"),
    ],
)
def test_the_protocol_follows_what_the_terminal_says(reply, protocol):
    assert choose(parse(reply), truecolor=True).protocol == protocol


def test_xterm_vt340s_registers_and_cell_size_are_read():
    replies = parse(XTERM_VT340)
    assert replies.registers == 1024 and replies.attributes[0] == 63
    assert parse(b"\x1b[6;13;6t" + XTERM_VT340).cell == (6, 13)  # CSI 6 ; height ; width t
    assert choose(replies, truecolor=False, cell=(6, 13)).cell == (6, 13)


def test_inside_tmux_only_what_tmux_passes():
    assert choose(parse(TMUX), truecolor=True, tmux=True).protocol == "halfblocks"
    assert choose(parse(b"\x1bP>|tmux 3.4\x1b\\\x1b[?1;2;4c"), truecolor=True, tmux=True).protocol == "sixel"
    through = choose(parse(TMUX), truecolor=True, tmux=True, passthrough=True, outer="iTerm2 3.5.0")
    assert (through.protocol, through.tmux) == ("iterm2", True)
    assert (
        choose(parse(TMUX), truecolor=True, tmux=True, passthrough=False, outer="iTerm2 3.5.0").protocol == "halfblocks"
    )
    assert choose(parse(TMUX + KITTY), truecolor=True, tmux=True).protocol == "halfblocks"  # kitty under tmux: no


def test_detect_asks_once_in_one_write():
    term = Scripted(XTERM_VT340, {"TERM": "xterm", "COLORTERM": ""}, size=(80, 24, 484, 316))
    g = detect(term)
    assert (g.protocol, g.cell, g.registers) == ("sixel", (6, 13), 1024)  # the cell from the window's pixels
    assert term.asked == [QUERY.encode()]
    assert QUERY.endswith("\x1b[c")  # DA1 last: its answer means all answers are in


def _pty_terminal():
    import pty

    master, slave = pty.openpty()
    return master, slave, Terminal(slave, {"TERM": "xterm"}, stdin=os.fdopen(os.dup(slave), "rb", buffering=0))


def test_a_real_pty_answered_by_a_scripted_terminal():
    import termios

    master, slave, term = _pty_terminal()
    echo_before = termios.tcgetattr(slave)[3] & termios.ECHO

    def terminal_side():  # reads the question, answers as kitty does
        asked = b""
        while not asked.endswith(b"\x1b[c"):
            asked += os.read(master, 1024)
        os.write(master, KITTY)

    player = threading.Thread(target=terminal_side, daemon=True)
    player.start()
    try:
        reply = term.query(QUERY.encode(), answered, 5.0)
        player.join(5)
        assert reply == KITTY
        assert termios.tcgetattr(slave)[3] & termios.ECHO == echo_before  # the terminal's mode is put back
    finally:
        os.close(master)
        os.close(slave)


def test_a_terminal_that_never_answers_gets_half_blocks():
    master, slave, term = _pty_terminal()
    try:
        reply = term.query(QUERY.encode(), answered, 0.2)
        assert reply == b""
        assert os.read(master, 4096).startswith(b"\x1b_G")  # the question was asked
        assert choose(parse(reply), truecolor=False).protocol == "halfblocks"
    finally:
        os.close(master)
        os.close(slave)


# -- layout: what the model gets, as the terminal shows it -------------------------------------


def test_fit_keeps_the_aspect_and_the_width():
    assert compose.fit(64, 32, 12, 100, (1, 2)) == (48, 12)  # half-blocks: a cell is 1x2 pixels
    assert compose.fit(640, 480, 12, 100, (10, 20)) == (32, 12)
    assert compose.fit(2000, 100, 12, 40, (1, 2)) == (40, 1)  # too wide: narrowed, fewer rows


def _image(w, h, colour=RED):
    return Image(np.full((h, w, 3), colour, dtype=np.uint8), "x.png")


def test_a_contact_sheet_puts_each_stamp_under_its_frame():
    frames = [_image(64, 36, (i * 30, 0, 0)) for i in range(8)]
    shown = compose.sheet(frames, [f"00:0{i}" for i in range(8)], 12, 120, (1, 2), 16)
    pictures = [s for s in shown if isinstance(s, compose.Picture)]
    lines = [s.text for s in shown if isinstance(s, compose.Line)]
    assert sum(len(line.split()) for line in lines) == 8
    assert "00:00" in lines[0] and lines[-1].rstrip().endswith("00:07")
    assert all(p.cols <= 120 for p in pictures)
    stamps = lines[0].split()
    step = (pictures[0].cols + 1) // len(stamps)  # a thumbnail and its gap
    assert [lines[0].index(s) for s in stamps] == [i * step for i in range(len(stamps))]  # each at its frame's column


def test_a_long_video_shows_frames_spread_over_it():
    assert compose.spread(32, 16)[0] == 0 and compose.spread(32, 16)[-1] == 31 and len(compose.spread(32, 16)) == 16


def test_the_waveform_marks_the_part_that_is_sent():
    rate = 1000
    sound = Audio(np.ones(10 * rate, dtype=np.float32), rate, "talk.wav")  # 10 s of it ...
    line = compose.waveform(sound, 40, start=10.0, total=40.0)  # ... from 0:10 of a 40 s recording
    assert line.marked == (10, 20)
    assert set(line.text[:10]) == {compose.OUTSIDE} and set(line.text[20:]) == {compose.OUTSIDE}
    assert set(line.text[10:20]) == {"█"}
    whole = compose.waveform(sound, 40)
    assert whole.marked == (0, 40) and compose.OUTSIDE not in whole.text


def test_captions_say_size_tokens_and_cache():
    img = _image(1024, 768)
    assert (
        compose.caption("photo.jpg", "image", [img], [MediaCost(256, False)])
        == "photo.jpg · 1024×768 px · 256 tokens · to encode"
    )
    assert compose.caption("photo.jpg", "image", [img], [MediaCost(256, True)]).endswith("256 tokens · from the cache")
    assert compose.caption("photo.jpg", "image", [img], [MediaCost(300, exact=False)]).endswith("~300 tokens")
    assert compose.caption("photo.jpg", "image", [img], None).endswith("tokens not counted yet")
    video = ["[00:00]", _image(448, 252), "[00:02]", _image(448, 252), Audio(np.zeros(4000, np.float32), 1000)]
    assert (
        compose.caption("clip.mp4", "video", video, [MediaCost(64)] * 2)
        == "clip.mp4 · 2 frames of 448×252 px, 00:00–00:02 + 4.0 s of sound · 128 tokens · to encode"
    )
    sound = Audio(np.zeros(30 * 16000, np.float32), 16000)
    assert (
        compose.caption("talk.mp3", "audio", [sound], [MediaCost(750)], start=60, total=135)
        == "talk.mp3 · 1:00–1:30 of 2:15 at 16 kHz · 750 tokens · to encode"
    )


def test_no_colour_keeps_the_caption_line_only():
    out = io.StringIO()
    Previewer(out, pictures=False, graphics=Graphics()).show("a.png", "image", [_image(8, 8)], [MediaCost(4)])
    assert out.getvalue() == "a.png · 8×8 px · 4 tokens · to encode\n"


@pytest.mark.parametrize("protocol", ["kitty", "iterm2", "sixel"])
def test_a_picture_reserves_its_rows_and_leaves_the_cursor_below_it(protocol):
    out = io.StringIO()
    Previewer(out, graphics=Graphics(protocol, cell=(6, 12)), columns=80, rows=5).show(
        "a.png", "image", [_image(60, 60)], [MediaCost(4)]
    )
    text = out.getvalue()
    # n newlines of room, save the cursor, up n rows, the picture, restore: the caption comes below
    assert text.startswith("\n" * 5 + "\x1b7\x1b[5A\r")
    body, _, caption = text.partition("\x1b8")
    assert caption == "\x1b[2ma.png · 60×60 px · 4 tokens · to encode\x1b[0m\n"


def test_a_pdfs_pages_come_as_a_strip():
    out = io.StringIO()
    pages = [_image(85, 110, (255, 255, 255)), _image(85, 110, (200, 200, 200))]
    Previewer(out, graphics=Graphics(), columns=80, rows=8).pages("report.pdf", pages, [3, 4], [MediaCost(256)] * 2)
    text = out.getvalue()
    assert "p. 3" in text and "p. 4" in text
    assert text.rstrip().endswith("report.pdf · 2 pages of 85×110 px · 512 tokens · to encode\x1b[0m")


def test_an_attached_pdf_is_shown_as_its_pages_strip():
    """What the resolver gives for a PDF (inputs/pdf.py): each chosen page's line, its picture, its text."""
    out = io.StringIO()
    white, grey = _image(85, 110, (255, 255, 255)), _image(85, 110, (200, 200, 200))
    segments = ["[page 2 of report.pdf]", white, "Total: 12", "[page 5 of report.pdf]", grey, "the end"]
    Previewer(out, graphics=Graphics(), columns=80, rows=8).show("report.pdf", "image", segments, [MediaCost(9)] * 2)
    text = out.getvalue()
    assert "p. 2" in text and "p. 5" in text and "p. 1" not in text
    assert text.rstrip().endswith("report.pdf · 2 pages of 85×110 px · 18 tokens · to encode\x1b[0m")


def test_a_long_videos_sheet_says_how_many_frames_it_draws():
    segments = [s for i in range(32) for s in (f"[00:{i:02d}]", _image(64, 48))]
    out = io.StringIO()
    Previewer(out, graphics=Graphics(), columns=120).show("clip.mp4", "video", segments, [MediaCost(8)] * 32)
    assert "clip.mp4 · 32 frames of 64×48 px, 00:00–00:31 · 256 tokens · to encode · 16 of them drawn" in out.getvalue()
    assert "[00:00]" in out.getvalue() and "[00:31]" in out.getvalue() and "[00:01]" not in out.getvalue()
