"""Shared by the benchmarks: print a table, write JSON next to it."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def report(name: str, rows: list[dict], notes: dict | None = None) -> Path:
    """Print rows as an aligned table and write them to bench/results/NAME.json."""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r[c]).ljust(width[c]) for c in cols))
    for k, v in (notes or {}).items():
        print(f"{k}: {_fmt(v)}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": name,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "machine": platform.platform(),
                "python": platform.python_version(),
                "rows": rows,
                "notes": notes or {},
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return out


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def median_seconds(fn, repeat: int = 5) -> float:
    """The median wall time of `repeat` calls: one slow call on a noisy machine does not count."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
