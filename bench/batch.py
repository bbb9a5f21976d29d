"""`mmchat batch` against a shell loop of `mmchat ask`, and batch throughput against --concurrency.

1. 16 images plus one broken file, the tiny vision models of tests/support/gguf_models.py: one `mmchat batch`
   against a loop of 17 `mmchat ask` processes, alternated ROUNDS times (the best of each kept),
   answers compared byte for byte. The goal is batch <= 0.3x the loop.
2. The same 16 requests through a server at --concurrency 1, 2 and 4: llama-cpp-python's server
   (one request at a time, so concurrency only overlaps mmchat's decoding and the network with
   its generation), or any server you give with --server URL (llama-server -np 4, vLLM, ...),
   and a stub server that answers each request in a fixed 0.25 s whatever else is in flight, the
   shape of a GPU server with free slots. Through real servers each answer is 512 tokens.

    python -m bench.batch [--server http://127.0.0.1:8080]   # e.g. llama-server -np 4 on the same tiny models:
    llama-server -m llm.gguf --mmproj mmproj-vision.gguf -np 4 -c 16384 -t 2 --port 8080
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._table import report
from bench.support import Reply, Stub, echo, llama_cpp_server, noise_png, serve, write_all

ROOT = Path(__file__).resolve().parent.parent

MMCHAT = [sys.executable, "-m", "mmchat"]
ROUNDS = 2
FLAGS = ["--threads", "2", "--temperature", "0", "--max-tokens", "16", "-q", "--no-cache"]
LONG = ["--max-tokens", "512", "--ignore-eos"]  # through servers: generation is what slots share


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t0, done


def answers_of(batch_stdout: str) -> list[str | None]:
    out = []
    for line in batch_stdout.splitlines():
        r = json.loads(line)
        out.append(r["response"]["body"]["choices"][0]["message"]["content"] if r["response"] else None)
    return out


def batch_vs_loop(models: dict[str, Path], files: list[str]) -> dict:
    model = ["--model", str(models["llm"]), "--mmproj", str(models["mmproj-vision"]), *FLAGS]
    loops, batches = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        asked = [
            subprocess.run([*MMCHAT, "ask", "Describe.", "-i", f, *model], capture_output=True, text=True)
            for f in files
        ]
        loops.append(time.perf_counter() - t0)
        seconds, batch = timed([*MMCHAT, "batch", "Describe.", *files, *model])
        batches.append(seconds)
    loop_answers = [a.stdout.rstrip("\n") if a.returncode == 0 else None for a in asked]
    return {
        "case": f"{len(files)} files (1 broken)",
        "shell_loop_s": min(loops),
        "batch_s": min(batches),
        "ratio": min(batches) / min(loops),
        "identical": answers_of(batch.stdout) == loop_answers,
        "batch_exit": batch.returncode,
    }


def concurrency_rows(name: str, url: str, files: list[str], extra: list[str]) -> list[dict]:
    rows, base = [], None
    timed([*MMCHAT, "batch", "Describe.", files[0], "--base-url", url, "--modalities", "image", *FLAGS, *extra])  # warm
    best: dict[int, tuple[float, subprocess.CompletedProcess]] = {}
    for _ in range(ROUNDS):  # alternated, the best of each kept: other work on the machine comes and goes
        for n in (1, 2, 4):
            run = timed(
                [
                    *MMCHAT,
                    "batch",
                    "Describe.",
                    *files,
                    "--base-url",
                    url,
                    "--concurrency",
                    str(n),
                    "--modalities",
                    "image",
                    *FLAGS,
                    *extra,
                ]
            )
            best[n] = min(best.get(n, run), run, key=lambda r: r[0])
    for n, (seconds, done) in best.items():
        base = base or seconds
        rows.append(
            {
                "case": f"{name}, --concurrency {n}",
                "shell_loop_s": "",
                "batch_s": seconds,
                "ratio": seconds / base,
                "identical": "",
                "batch_exit": done.returncode,
                "requests_per_s": len(files) / seconds,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="also measure this OpenAI-compatible server (it needs the images' vision)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        models = write_all(d / "models")
        files = [str(noise_png(d / f"photo{i:02}.png", seed=i, size=(96, 64))) for i in range(16)]
        (d / "broken.jpg").write_text("not a photo")
        rows = [batch_vs_loop(models, [*files[:8], str(d / "broken.jpg"), *files[8:]])]
        for row in rows:
            row["requests_per_s"] = ""
        with llama_cpp_server(models) as url:
            rows += concurrency_rows("llama_cpp.server (1 slot)", url, files, LONG)
        if args.server:
            rows += concurrency_rows(f"server {args.server}", args.server, files, LONG)
        stub = Stub(reply=lambda body, attempt: Reply(text=echo(body, attempt).text, delay=0.25))
        with serve(stub) as running:
            rows += concurrency_rows("stub, 0.25 s a request, free slots", running.url, files, [])
    report("batch", rows, {"rounds": ROUNDS, "goal": "batch <= 0.3x the shell loop, answers identical"})


if __name__ == "__main__":
    main()
