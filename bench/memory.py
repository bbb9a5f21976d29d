"""Peak memory against the number of inputs, and the log's write time against the conversation's length.

  batch N     `mmchat batch "Describe this photo." N photos` over 30, 300 and 1,000 distinct 640x480 JPEGs
  chat N      a scripted `mmchat chat` of 10 and 100 turns, each attaching a new photo (the REPL logs
              them, as it does by default)
  log write   one more turn of a logged conversation of 1 and of 1,000 turns (in this process)

Every run is a fresh child process on the tiny models of tests/support/gguf_models.py (the model's own memory
is small, so what grows is mmchat's), with its own empty MMCHAT_HOME, so every photo is read,
decoded and encoded, and the disk cache of encoded media starts empty. Peak RSS is the child's
ru_maxrss (os.wait4). Answers are `--max-tokens` long (16 in a batch, 64 in the REPL: about 40
turns fit in the tiny model's 4,096-token window, so the 100-turn session moves its window on).
Goals (issue 21): 1,000 photos within 1.2x of 30, 100 turns within 1.2x of 10, a log write at
1,000 turns what it costs at 1. Photos are built once into bench/.cache/photos/.

    python -m bench.memory            # all of it: a few minutes on two cores
    python -m bench.memory --quick    # 30 and 100 photos, 10 and 30 turns
    python -m bench.memory --only chat
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._table import report
from bench.logs import turn_write_ms

ROOT = Path(__file__).resolve().parents[1]

CACHE = ROOT / "bench" / ".cache"
COMMON = ["--threads", "2", "--temperature", "0", "-q"]
BATCH = ["--max-tokens", "16"]
CHAT = ["--max-tokens", "64"]


def models() -> dict[str, Path]:
    from bench.support import write_all

    where = CACHE / "models"
    if not (where / "llm.gguf").exists():
        write_all(where)
    return {p.stem: p for p in where.rglob("*.gguf")}  # the projectors are in projectors/


def photos(n: int) -> list[Path]:
    """`n` distinct 640x480 JPEGs that compress like photos: smooth light, a few shapes, some grain."""
    import numpy as np
    from PIL import Image

    where = CACHE / "photos"
    where.mkdir(parents=True, exist_ok=True)
    out = []
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    for i in range(n):
        path = where / f"photo{i:04d}.jpg"
        if not path.exists():
            rng = np.random.default_rng(i)
            a, b, c = rng.uniform(0, 255, (3, 3))
            img = np.stack([a[k] + (b[k] - a[k]) * x / 640 + (c[k] - a[k]) * y / 480 for k in range(3)], axis=-1)
            for _ in range(6):
                x0, y0 = rng.integers(0, 560), rng.integers(0, 400)
                img[y0 : y0 + rng.integers(20, 200), x0 : x0 + rng.integers(20, 200)] = rng.uniform(0, 255, 3)
            img += rng.normal(0, 6, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=85)
        out.append(path)
    return out


def run(args: list[str], stdin: str | None = None) -> dict:
    """One `mmchat` child with a fresh MMCHAT_HOME: wall seconds, peak RSS (MiB), exit code, stderr's last line."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MMCHAT_HOME": home}
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmchat", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        feeder = threading.Thread(
            target=lambda: (proc.stdin.write((stdin or "").encode()), proc.stdin.close()), daemon=True
        )
        feeder.start()
        answers = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        reader.join()
        feeder.join()
    err = b"".join(chunks).decode(errors="replace").strip().splitlines()
    return {
        "seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "lines_out": answers.count("\n"),
        "says": (err[-1] if err else "")[:80],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer photos and turns")
    parser.add_argument("--only", choices=["batch", "chat"], help="run only these children")
    opts = parser.parse_args()
    batches, turns, logged = ([30, 100], [10, 30], [1, 100]) if opts.quick else ([30, 300, 1000], [10, 100], [1, 1000])
    batches, turns = ([] if opts.only == "chat" else batches), ([] if opts.only == "batch" else turns)
    m = models()
    model = ["--model", str(m["llm"]), "--mmproj", str(m["mmproj-vision"]), *COMMON]
    pool = photos(max(*batches, *turns))
    rows = []
    for n in batches:
        rows.append(
            {
                "run": f"batch {n} photos",
                "inputs": n,
                **run(["batch", "Describe this photo.", *map(str, pool[:n]), *model, *BATCH]),
            }
        )
    for n in turns:
        script = "".join(f"/attach {p}\nDescribe this photo.\n" for p in pool[:n])
        rows.append({"run": f"chat {n} turns", "inputs": n, **run(["chat", *model, *CHAT], stdin=script)})
    for row in rows:  # side by side: each run against the smallest of its kind
        first = next(r for r in rows if r["run"].split()[0] == row["run"].split()[0])
        row["rss_vs_smallest"] = row["peak_rss_mib"] / first["peak_rss_mib"]
    with tempfile.TemporaryDirectory() as home:
        from mmchat import log as logs

        store = logs.LogStore.open(Path(home))
        writes = {n: turn_write_ms(store, f"c{n}", n)[0] for n in logged}
    notes = {f"log_write_ms_at_{n}_turns": ms for n, ms in writes.items()}
    notes[f"log_write_{logged[-1]}_vs_{logged[0]}"] = writes[logged[-1]] / writes[logged[0]]
    report("memory", rows, notes)
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
