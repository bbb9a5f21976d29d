"""Benchmark: 32 frames of a long video by seeking, against decoding every frame.

Builds (once; kept in bench/.cache/) a long low-resolution H.264 video with a keyframe every
10 s, then decodes it with mmchat.media.video.decode_video in a fresh subprocess per run,
for peak memory (ru_maxrss) as well as time:

  seek        the default: 32 targets spread over the video, each reached by a seek
  sequential  the same 32 targets, found by decoding every frame from the start

Prints a table, writes bench/results/video_decode.json, and exits 1 if seeking is not at
least 10x faster.

    python -m bench.video_decode                 # 2 hours at 10 fps, 160x90
    python -m bench.video_decode --minutes 30 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results" / "video_decode.json"
MIN_RATIO = 10.0
KEYFRAME_SECONDS = 10


def build(minutes: float, fps: int, width: int, height: int, rebuild: bool) -> tuple[Path, float]:
    """The long video (frame i shows i as a pattern of grey blocks); cached by its parameters."""
    import av
    import numpy as np

    path = CACHE / f"long_{minutes:g}min_{fps}fps_{width}x{height}.mp4"
    if path.exists() and not rebuild:
        return path, 0.0
    CACHE.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = KEYFRAME_SECONDS * fps
        block = np.ones((height // 3, width // 4), np.uint8)
        for i in range(round(minutes * 60 * fps)):
            bits = np.array([(i >> b) & 1 for b in range(12)], np.uint8).reshape(3, 4) * 255
            grey = np.zeros((height, width), np.uint8)
            grey[: height // 3 * 3, : width // 4 * 4] = np.kron(bits, block)
            frame = av.VideoFrame.from_ndarray(np.repeat(grey[:, :, None], 3, axis=2), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    partial.replace(path)
    return path, time.perf_counter() - began


def run_case(case: str, video: Path) -> dict:
    """One decode in this (fresh) process: time, frames decoded, peak memory."""
    import mmchat.media.video as mv

    decoded = [0]
    original = mv._decoded

    def counted(container, stream):
        for frame in original(container, stream):
            decoded[0] += 1
            yield frame

    mv._decoded = counted
    if case == "sequential":
        mv._SEEK_MIN_GAP = float("inf")  # never seek: decode forward from the first frame
    began = time.perf_counter()
    result = mv.decode_video(video, label=video.name)
    seconds = time.perf_counter() - began
    return {
        "case": case,
        "seconds": seconds,
        "frames": len(result.frames),
        "decoded": decoded[0],
        "times": [round(f.time, 3) for f in result.frames],
        "digests": [f.image.digest() for f in result.frames],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(case: str, video: Path, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        cmd = [sys.executable, "-m", "bench.video_decode", "--case", case, "--video", str(video)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        runs.append(json.loads(out.splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "median_seconds": statistics.median(r["seconds"] for r in runs), "runs": len(runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--size", default="160x90", help="WIDTHxHEIGHT")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # a child run
        print(json.dumps(run_case(args.case, args.video)))
        return 0

    import av

    width, height = (int(v) for v in args.size.split("x"))
    video, build_seconds = build(args.minutes, args.fps, width, height, args.rebuild)
    seek = measure("seek", video, args.repeat)
    sequential = measure("sequential", video, args.repeat)
    ratio = sequential["seconds"] / seek["seconds"]
    same = seek["digests"] == sequential["digests"]

    size_mib = video.stat().st_size / 2**20
    built = f", built in {build_seconds:.1f} s" if build_seconds else ", cached"
    print(
        f"video: {video.relative_to(ROOT)}: {args.minutes:g} min, {args.fps} fps, {width}x{height},"
        f" keyframe every {KEYFRAME_SECONDS} s, {size_mib:.1f} MiB{built}"
    )
    print(f"{'case':<12}{'frames':>8}{'decoded':>10}{'best s':>10}{'median s':>10}{'peak RSS MiB':>14}")
    for r in (seek, sequential):
        print(
            f"{r['case']:<12}{r['frames']:>8}{r['decoded']:>10}{r['seconds']:>10.3f}"
            f"{r['median_seconds']:>10.3f}{r['peak_rss_mib']:>14.1f}"
        )
    verdict = "ok" if ratio >= MIN_RATIO else f"FAIL (needs >= {MIN_RATIO:g}x)"
    print(
        f"seek path is {ratio:.1f}x faster than decoding every frame: {verdict};"
        f" same frames both ways: {'yes' if same else 'NO'}"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for r in (seek, sequential):
        del r["digests"]
    RESULTS.write_text(
        json.dumps(
            {
                "video": {
                    "path": str(video.relative_to(ROOT)),
                    "minutes": args.minutes,
                    "fps": args.fps,
                    "width": width,
                    "height": height,
                    "keyframe_seconds": KEYFRAME_SECONDS,
                    "bytes": video.stat().st_size,
                    "build_seconds": build_seconds or None,  # None: cached (--rebuild times the write)
                },
                "cases": [seek, sequential],
                "ratio": ratio,
                "same_frames": same,
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "av": av.__version__,
                    "cpu_count": os.cpu_count(),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if ratio >= MIN_RATIO and same else 1


if __name__ == "__main__":
    sys.exit(main())
