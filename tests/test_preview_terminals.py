"""Previews in real terminals, on the tiny models: `mmchat chat` in a tmux pane (half-blocks)
and in xterm under Xvfb (`xterm -ti vt340`: sixel, read back from a screenshot); and `ask`
through pipes, where no escape sequence may appear.

The tools come from apt (.ci/run installs them); a machine without them skips the test that
needs them with one line naming the packages.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmchat.runner import Runner
from tests.support.helpers import mmchat_env, model_args
from tests.support.mediafiles import halves_png

ROOT = Path(__file__).resolve().parent.parent
RED, BLUE = (255, 0, 0), (0, 0, 255)
# off xterm's 256-colour palette (nearest: (215,0,95) and (0,95,215)): only a picture drawn in the
# image's own colours, as sixel's colour registers are, shows them within a few steps
ROSE, SEA = (200, 40, 70), (40, 90, 200)


def _need(*tools: str, packages: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install {packages}")


def _chat_command(models: dict[str, Path]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mmchat",
        "chat",
        *model_args(models, greedy=False),
        "--ctx-size",
        "1024",
    ]


def _image_tokens(models: dict[str, Path], image: Path) -> int:
    """What the model's own answer reports for the image: the caption must say the same."""
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=1024, threads=2, cache=False) as r:
        reply = r.chat(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": str(image)}},
                        {"type": "text", "text": "Hi"},
                    ],
                }
            ],
            temperature=0,
            max_tokens=1,
        )
    return reply.usage.image_tokens


def _until(check, seconds: float, step: float = 0.3):
    end = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > end:
            return found
        time.sleep(step)


# -- tmux: half-blocks ---------------------------------------------------------------------------------


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _cells(line: str) -> list[tuple[tuple[int, ...] | None, tuple[int, ...] | None]]:
    """(foreground, background) of each ▀ in a line of `capture-pane -e` output."""
    fg = bg = None
    cells, pos = [], 0
    for m in list(_SGR.finditer(line)) + [None]:
        text = line[pos : m.start() if m else len(line)]
        cells += [(fg, bg)] * text.count("▀")
        if m is None:
            break
        pos = m.end()
        params = [int(p) if p else 0 for p in m.group(1).split(";")]
        i = 0
        while i < len(params):
            p = params[i]
            if p in (38, 48) and i + 4 < len(params) and params[i + 1] == 2:
                colour = tuple(params[i + 2 : i + 5])
                fg, bg = (colour, bg) if p == 38 else (fg, colour)
                i += 5
                continue
            if p == 0:
                fg = bg = None
            elif p == 39:
                fg = None
            elif p == 49:
                bg = None
            i += 1
    return cells


def test_a_tmux_pane_shows_half_blocks_that_follow_the_image_and_the_token_count(models, tmp_path):
    _need("tmux", packages="tmux")
    image = halves_png(tmp_path / "halves.png")
    tokens = _image_tokens(models, image)
    socket = f"mmchat-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    env = {**mmchat_env({"MMCHAT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}), "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    inner = {"MMCHAT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "COLORTERM": "truecolor"}
    command = " ".join(shlex.quote(a) for a in _chat_command(models))
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "45",
            *(a for k, v in inner.items() for a in ("-e", f"{k}={v}")),
            command,
        ],
        env=env,
        check=True,
        cwd=ROOT,
    )

    def pane(*flags: str) -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", *flags], env=env, capture_output=True, text=True).stdout

    try:
        assert _until(lambda: "Ctrl-D leaves" in pane(), 60), pane()
        subprocess.run([*tmux, "send-keys", f"/attach {image}", "Enter"], env=env, check=True)
        assert _until(lambda: "halves.png · 64×32 px" in pane(), 60), pane()
        seen = pane("-e")
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True)
    rows = [_cells(line) for line in seen.splitlines() if "▀" in line]
    assert len(rows) == 12, seen
    for cells in rows:  # red cells on the left, blue on the right, as the image is
        half = len(cells) // 2
        assert set(cells[:half]) == {(RED, RED)} and set(cells[half:]) == {(BLUE, BLUE)}, cells
    assert f"1. halves.png · 64×32 px · {tokens} tokens · to encode" in seen


# -- xterm under Xvfb: sixel, seen in a screenshot --------------------------------------------------------


def _display() -> tuple[subprocess.Popen, str]:
    """A virtual X server on a free display (Xvfb picks it and says which)."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    return server, f":{number}"


def _screenshot(display: str, path: Path) -> np.ndarray | None:
    from PIL import Image

    done = subprocess.run(["import", "-display", display, "-window", "root", f"png:{path}"], capture_output=True)
    return np.asarray(Image.open(path).convert("RGB")) if done.returncode == 0 and path.exists() else None


def _region(shot: np.ndarray, colour: tuple[int, int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The pixels of this colour (within a few steps of it), and their bounding box (top, bottom, left, right)."""
    near = np.all(np.abs(shot.astype(int) - colour) <= 6, axis=-1)
    if near.sum() < 100:
        return None
    ys, xs = np.nonzero(near)
    return near, (ys.min(), ys.max(), xs.min(), xs.max())


def test_xterm_as_a_vt340_draws_the_image_as_sixel(models, tmp_path):
    _need("Xvfb", "xterm", "xdotool", "import", packages="xvfb xterm xdotool imagemagick")
    image = halves_png(tmp_path / "halves.png", left=ROSE, right=SEA)
    home = tmp_path / "home"
    server, display = _display()
    env = {**mmchat_env({"MMCHAT_HOME": str(home), "PYTHONPATH": str(ROOT)}), "DISPLAY": display}
    for var in ("TMUX", "COLORTERM"):
        env.pop(var, None)
    term = None
    try:
        term = subprocess.Popen(
            ["xterm", "-ti", "vt340", "-geometry", "100x40+0+0", "-e", *_chat_command(models)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert _until(lambda: (home / "history").exists(), 60), "the chat never came up in xterm"  # the prompt is next
        time.sleep(1.0)
        subprocess.run(["xdotool", "mousemove", "200", "200"], env=env, check=True)  # keys go where the pointer is
        subprocess.run(["xdotool", "type", "--delay", "20", f"/attach {image}"], env=env, check=True)
        subprocess.run(["xdotool", "key", "Return"], env=env, check=True)

        def drawn():
            shot = _screenshot(display, tmp_path / "shot.png")
            if shot is None:
                return None
            red, blue = _region(shot, ROSE), _region(shot, SEA)
            return (shot, red, blue) if red and blue else None

        found = _until(drawn, 60, step=0.5)
        assert found, "the image's colours never appeared in xterm's window"
    finally:
        for proc in (term, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    shot, (red, (rt, rb, rl, rr)), (blue, (bt, bb, bl, br)) = found
    assert abs(rt - bt) <= 1 and abs(rb - bb) <= 1  # side by side, one picture
    assert 0 <= bl - rr <= 2  # blue starts where red ends: red on the left, as in the image
    width, height = rr - rl + 1, rb - rt + 1
    assert abs((br - bl + 1) - width) <= 2 and abs(width - height) <= 0.1 * height  # two squares: 64x32
    assert height >= 60  # about 12 text rows, not a thumbnail of a few pixels
    assert red[rt : rb + 1, rl : rr + 1].mean() > 0.99 and blue[bt : bb + 1, bl : br + 1].mean() > 0.99


# -- pipes and --json: nothing but the answer -----------------------------------------------------------


def test_pipes_and_json_carry_no_escape_sequence(models, tmp_path):
    image = halves_png(tmp_path / "halves.png")
    env = mmchat_env({"MMCHAT_HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "COLORTERM": "truecolor"})
    ask = [
        sys.executable,
        "-m",
        "mmchat",
        "ask",
        "Describe it.",
        "-i",
        str(image),
        "--preview",
        *model_args(models, greedy=False),
        "-t",
        "0",
        "-n",
        "4",
    ]
    piped = subprocess.run(
        " ".join(shlex.quote(a) for a in ask) + " 2>&1 | od -c",
        shell=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0 and piped.stdout and "033" not in piped.stdout  # od -c shows ESC as 033
    as_json = subprocess.run([*ask, "--json"], env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    assert b"\x1b" not in as_json.stdout + as_json.stderr
    assert json.loads(as_json.stdout)["usage"]["prompt_tokens"] > 0


# -- the engine's own count, which captions show ---------------------------------------------------------


def test_the_engine_counts_a_medium_before_encoding_and_knows_when_it_is_kept(models, tmp_path):
    from mmchat.engine.layout import _paired
    from mmchat.media.image import decode_image

    image = halves_png(tmp_path / "halves.png")
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=1024, threads=2, cache=False) as r:
        decoded = decode_image(image.read_bytes(), label="halves.png")
        before = r.engine.costs([decoded])
        planned = []
        r.engine.prepare([decoded], on_plan=planned.append)  # the background encode's count, before it encodes
        after = r.engine.costs([decoded])
    assert before[0].tokens == _image_tokens(models, image) and not before[0].cached
    assert planned == [before] and after[0].cached and after[0].tokens == before[0].tokens
    with Runner(models["llm-qwen2vl"], models["mmproj-qwen2vl"], n_ctx=1024, threads=2, cache=False) as r:
        frames = _paired([decode_image(halves_png(tmp_path / f"f{i}.png").read_bytes(), label="f") for i in range(2)])
        pair = r.engine.costs(frames)  # Qwen-VL encodes two frames as one: the second costs nothing more
    assert pair[0].tokens > 0 and pair[1].tokens == 0
