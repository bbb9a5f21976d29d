"""How long `mmchat --help` and `mmchat ask --help` take to start, next to `python -c pass`.

Each command runs N times, interleaved so machine noise hits all alike; the table gives the
median wall time and the ratio to a bare interpreter. Goal: under 0.3 s. `--against DIR` runs
the same commands from another checkout too (e.g. `mkdir /tmp/base && git archive HEAD~3 | tar -x -C /tmp/base`), in the
same interleaved rounds, so a change is measured beside what it changes.

    python -m bench.startup [N] [--against DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._table import report

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mmchat --help": [sys.executable, "-m", "mmchat", "--help"],
    "mmchat ask --help": [sys.executable, "-m", "mmchat", "ask", "--help"],
}


def cases(against: Path | None) -> dict[str, tuple[list[str], Path]]:
    """Each row's command and the checkout it runs in (`python -m mmchat` imports the one in its cwd)."""
    rows = {name: (cmd, ROOT) for name, cmd in COMMANDS.items()}
    if against is not None:
        rows |= {f"{name} [{against}]": (cmd, against) for name, cmd in COMMANDS.items() if "mmchat" in name}
    return rows


def main(n: int = 15, against: Path | None = None) -> None:
    runs = cases(against)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(n):
        for name, (cmd, cwd) in runs.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=cwd)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    rows = [
        {"command": k, "median_s": statistics.median(v), "min_s": min(v), "x_python": statistics.median(v) / base}
        for k, v in times.items()
    ]
    report("startup", rows, {"runs": n, "goal_s": 0.3, "against": str(against or "")})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--against", type=Path, help="another checkout to time beside this one")
    args = parser.parse_args()
    main(args.n, args.against.resolve() if args.against else None)
