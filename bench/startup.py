"""How long `mmchat --help` and `mmchat ask --help` take to start, next to `python -c pass`.

Each command runs N times, interleaved so machine noise hits all alike; the table gives the
median wall time and the ratio to a bare interpreter. Goal: under 0.3 s.

    python bench/startup.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _table import report

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mmchat --help": [sys.executable, "-m", "mmchat", "--help"],
    "mmchat ask --help": [sys.executable, "-m", "mmchat", "ask", "--help"],
}


def main(n: int = 15) -> None:
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(n):
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    rows = [
        {"command": k, "median_s": statistics.median(v), "min_s": min(v), "x_python": statistics.median(v) / base}
        for k, v in times.items()
    ]
    report("startup", rows, {"runs": n, "goal_s": 0.3})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
