"""Benchmark: what the checks before llama.cpp and the verified downloads cost.

  header check   engine/pairs.check_files on a text model with a real-size vocabulary
                 (262,144 tokens and 150,000 merges, as Gemma 3 / Qwen have) and its projector:
                 paid on every model load
  sha256         checksums.digest of a file (1 GiB by default): paid once per pulled file,
                 and by `mmchat pull --verify`

Prints a table and writes bench/results/trust_checks.json.

    python -m bench.trust_checks
    python -m bench.trust_checks --hash-mib 4096 --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench._table import median_seconds, report
from bench.support import gguf_models as g
from mmchat.models import checksums, pairs

ROOT = Path(__file__).resolve().parents[1]


def big_vocab_model(path: Path) -> Path:
    """The tiny text model's tensors behind a real model's tokenizer metadata."""
    b = g.GGUFBuilder("llama", "bench")
    b.uint32("llama.embedding_length", g.N_EMBD)
    b.string_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(262_144)])
    b.int32_array("tokenizer.ggml.token_type", [1] * 262_144)
    b.string_array("tokenizer.ggml.merges", [f"t{i} o{i}" for i in range(150_000)])
    rng = g.rng_for("bench")
    for i in range(400):  # a tensor table the size of a 30-layer model's
        b.tensor(f"blk.{i}.weight", g.normal(rng, (4, 8), 1.0))
    return b.write(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hash-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model, mmproj = big_vocab_model(d / "model.gguf"), g.write_vision_mmproj(d / "mmproj.gguf")
        header = median_seconds(lambda: pairs.check_files(model, mmproj), args.repeat)
        blob = d / "blob"
        with open(blob, "wb") as f:
            chunk = bytes(range(256)) * 4096
            for _ in range(args.hash_mib):
                f.write(chunk)
        sha = median_seconds(lambda: checksums.digest(blob, "sha256", "blob"), max(1, args.repeat // 2))
    rows = [
        {"what": "header check (262k vocab + mmproj)", "seconds": header, "rate": "-"},
        {"what": f"sha256 of {args.hash_mib} MiB", "seconds": sha, "rate": f"{args.hash_mib / 1024 / sha:.2f} GiB/s"},
    ]
    report("trust_checks", rows, {"repeat": args.repeat})


if __name__ == "__main__":
    main()
