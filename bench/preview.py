"""What a preview adds to attaching a 12-megapixel photo in the REPL, and whether it delays the encode.

`/attach photo.jpg` (4000x3000 JPEG) in a `Chat` on the tiny test models (a real decode, a real
libmtmd tokenization for the caption's token count, a real background encode), side by side:
previews off, and on in each protocol (drawn into memory: the terminal's own drawing time is
the terminal's). Each attach is a fresh Runner, so the photo is decoded every time. Columns:
the attach's wall time (median), what the preview adds to it, the preview step alone (drawing,
and waiting for the caption's token count), of that the wait for the count (libmtmd tokenizing
in the encode's thread, after the picture is made), and when the background encode began after
the attach started (it must not move with the preview: the encode starts first).

    python -m bench.preview [RUNS]
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._table import report

ROOT = Path(__file__).resolve().parent.parent

CASES = ["no preview", "half-blocks 24-bit", "half-blocks 256", "sixel", "kitty", "iterm2"]


def photo(path: Path) -> Path:
    """A 12-MP JPEG with a photo's content (examples/photo.jpg scaled up, with grain)."""
    import numpy as np
    from PIL import Image

    base = Image.open(ROOT / "examples" / "photo.jpg").convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    grain = np.random.default_rng(0).integers(-12, 13, (3000, 4000, 3))
    Image.fromarray(np.clip(np.asarray(base).astype(int) + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def attach_once(case: str, models: dict, image: Path) -> tuple[float, float, float, float]:
    """(attach seconds, seconds until the background encode began, seconds in the preview step,
    seconds of it spent waiting for the encode's token count)."""
    from rich.console import Console

    from mmchat.chat import commands as cmd
    from mmchat.chat.background import Job
    from mmchat.chat.conversation import Conversation
    from mmchat.chat.session import Chat
    from mmchat.options import GenerationOptions
    from mmchat.preview import Graphics, Previewer
    from mmchat.runner import Runner

    runner = Runner(models["llm"], models["mmproj-vision"], n_ctx=1024, threads=2, cache=False)
    began: list[float] = []
    prepare = runner.engine.prepare

    def timed(*args, **kwargs):
        began.append(time.perf_counter())
        return prepare(*args, **kwargs)

    runner.engine.prepare = timed
    previewer = None
    if case != "no preview":
        protocol = {"sixel": "sixel", "kitty": "kitty", "iterm2": "iterm2"}.get(case, "halfblocks")
        graphics = Graphics(protocol, truecolor=case != "half-blocks 256", cell=(9, 18))
        previewer = Previewer(io.StringIO(), graphics=graphics, columns=120)
    chat = Chat(
        runner,
        lambda name: runner,
        "m",
        GenerationOptions(),
        Conversation(),
        Console(file=io.StringIO()),
        preview=previewer,
    )
    shown: list[float] = []
    show = chat.show

    def timed_show(*args, **kwargs):
        t = time.perf_counter()
        show(*args, **kwargs)
        shown.append(time.perf_counter() - t)

    chat.show = timed_show
    waited: list[float] = []
    wait_costs = Job.wait_costs

    def timed_wait(job, seconds):
        t = time.perf_counter()
        try:
            return wait_costs(job, seconds)
        finally:
            waited.append(time.perf_counter() - t)

    Job.wait_costs = timed_wait
    try:
        t0 = time.perf_counter()
        chat.safely(cmd.Attach((str(image),)))
        elapsed = time.perf_counter() - t0
        chat.background.wait()
        return elapsed, began[0] - t0, sum(shown), sum(waited)
    finally:
        Job.wait_costs = wait_costs
        chat.stop_background()
        runner.close()


def main(runs: int = 7) -> None:
    from bench.support import write_all

    with tempfile.TemporaryDirectory() as tmp:
        models = write_all(Path(tmp) / "models")
        image = photo(Path(tmp) / "photo-12mp.jpg")
        attach_once("no preview", models, image)  # warm: imports, the first model load
        times: dict[str, list[tuple[float, float, float, float]]] = {c: [] for c in CASES}
        for _ in range(runs):  # interleaved, so a busy moment hits every case alike
            for case in CASES:
                times[case].append(attach_once(case, models, image))
    base = statistics.median(r[0] for r in times["no preview"])
    rows = []
    for case, results in times.items():
        attach = statistics.median(r[0] for r in results)
        rows.append(
            {
                "case": case,
                "attach_ms": 1000 * attach,
                "added_ms": 1000 * (attach - base),
                "x_no_preview": attach / base,
                "preview_step_ms": 1000 * statistics.median(r[2] for r in results),
                "of_it_count_wait_ms": 1000 * statistics.median(r[3] for r in results),
                "encode_began_ms": 1000 * statistics.median(r[1] for r in results),
            }
        )
    report(
        "preview",
        rows,
        {
            "runs": runs,
            "photo": "4000x3000 JPEG, decoded to 1536x1152 (--image-max-side)",
            "model": "tiny test models (tests/support/gguf_models.py)",
        },
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
