"""What clipboard:, screen: and PDFs cost a turn, side by side with a plain PNG file.

Rows (median of 5, seconds, on the FakeEngine so only mmchat's own work is timed):
  png file        a 1920x1080 PNG read and decoded: the baseline
  screen:         capture a 1920x1080 Xvfb screen, keep it as a PNG, decode it
  clipboard:      the same image served by xclip, read, kept, decoded
  pdf 8 of 20     a 20-page PDF: the first 8 pages drawn at 1536 px with their text layers
Goals (issue 19): capture adds under 0.2 s to a turn; 8 pages under 2 s on 2 cores.

    python bench/capture.py      # needs xvfb and xclip for the capture rows
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench._table import median_seconds, report  # noqa: E402


def main() -> None:
    from PIL import Image as PILImage

    from mmchat.inputs.capture import captured
    from mmchat.messages import image_part, user_message
    from mmchat.runner import Runner
    from mmchat.testing import FakeEngine
    from tests.documents import text_pdf

    work = Path(tempfile.mkdtemp())
    os.environ["MMCHAT_HOME"] = str(work / "home")
    rgb = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    rgb[:, :960] //= 16  # half the screen flat, as screens are
    png = work / "screen.png"
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, "PNG")
    png.write_bytes(buffer.getvalue())
    pdf = text_pdf(work / "report.pdf", 20)

    def turn(url: str) -> None:
        runner = Runner(engine=FakeEngine(), devices=True)  # a new runner: nothing cached
        messages = captured([user_message("what?", [image_part(url)])], check=runner.inputs.check_kind)
        runner.prepare(messages)

    rows = [{"what": "png file", "seconds": median_seconds(lambda: turn(str(png)))}]
    if shutil.which("Xvfb") and shutil.which("xclip"):
        from tests.desktop import copy_to_clipboard, draw_on_root, xvfb

        with xvfb(1920, 1080) as display:
            os.environ["DISPLAY"] = display
            draw_on_root(display, rgb)
            copy_to_clipboard(display, png.read_bytes(), "image/png")
            rows.append({"what": "screen:", "seconds": median_seconds(lambda: turn("screen:"))})
            rows.append({"what": "clipboard:", "seconds": median_seconds(lambda: turn("clipboard:"))})
    else:
        print("no Xvfb or xclip: the screen: and clipboard: rows are left out")
    rows.append({"what": "pdf 8 of 20", "seconds": median_seconds(lambda: turn(str(pdf)))})
    base = rows[0]["seconds"]
    for row in rows:
        row["added_s"] = row["seconds"] - base
        row["ratio"] = row["seconds"] / base
    report("capture", rows, {"goal": "screen:/clipboard: added_s < 0.2; pdf 8 of 20 < 2 s on 2 cores",
                             "cores": os.cpu_count()})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
