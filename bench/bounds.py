"""Benchmark: time and peak memory of what must stay bounded, each `mmchat ask` in a fresh process.

  long audio       a 3-hour WAV to the tiny audio model: refused from its length (goal < 2 s, < 300 MB)
  audio part       the same WAV with --start 1:00:00 --end 1:01:00: one minute decoded and answered
  long video       32 frames of a 2-hour 1080p video, encoded by the tiny vision model (goal < 500 MB)
  its soundtrack   the same video to the vision+audio model: its 2 hours of sound refused before decoding
  decode only      decode_video alone on the 2-hour video (no model)
  trickling URL    a local server sending a PNG at one byte a second: with the defaults (the speed
                   floor, 1 KiB/s for 15 s, ends it long before the 300 s deadline), and with
                   --url-deadline 5

Files are built once into bench/.cache/ (the 2-hour 1080p video takes a few minutes). Peak
memory is the child's own ru_maxrss (os.wait4). Prints a table; writes bench/results/bounds.json.

    python -m bench.bounds
    python -m bench.bounds --only audio      # skip the video cases
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench._table import report
from bench.support import Trickle, local_server

ROOT = Path(__file__).resolve().parents[1]

CACHE = ROOT / "bench" / ".cache"


def run(args: list[str], *, python: bool = False, code: Path = ROOT) -> dict:
    """One child (running the mmchat package in `code`): wall seconds, peak RSS (MiB), exit code
    and the last line of stderr."""
    cmd = [sys.executable, *(args if python else ["-m", "mmchat", *args])]
    env = {**os.environ, "MMCHAT_HOME": str(CACHE / "home")}
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=code, env=env)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    reader.join()
    err = b"".join(chunks).decode(errors="replace").strip().splitlines()
    return {
        "seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "says": (err[-1] if err else "")[:110],
    }


def models() -> dict[str, Path]:
    from bench.support import write_all

    where = CACHE / "models"
    if not (where / "llm.gguf").exists():
        write_all(where)
    return {p.stem: p for p in where.rglob("*.gguf")}  # the projectors are in projectors/


def long_wav(hours: float = 3.0) -> Path:
    import numpy as np
    import soundfile

    path = CACHE / f"tone_{hours:g}h_16k.wav"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        block = (0.1 * np.sin(np.arange(16000 * 60) / 16000 * 2 * np.pi * 440)).astype(np.float32)
        with soundfile.SoundFile(path.with_suffix(".partial"), "w", 16000, 1, "PCM_16", format="WAV") as f:
            for _ in range(round(hours * 60)):
                f.write(block)
        path.with_suffix(".partial").replace(path)
    return path


def long_video(minutes: float = 120, fps: int = 1) -> Path:
    """1920x1080 H.264 at `fps` (a keyframe every 10 s), with a 16 kHz AAC soundtrack."""
    import av
    import numpy as np

    path = CACHE / f"long_{minutes:g}min_1080p_{fps}fps_sound.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    rng = np.random.default_rng(0)
    base = (rng.random((1080 // 8, 1920 // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(partial), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 1920, 1080, "yuv420p"
        vs.codec_context.gop_size = 10 * fps
        aus = out.add_stream("aac", rate=16000, layout="mono")
        tone = (0.2 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 330)).astype(np.float32)
        for i in range(round(minutes * 60 * fps)):
            picture = np.roll(base, i * 8, axis=1)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
            if i % fps == 0:  # one second of sound per second of video
                second = i // fps
                for start in range(0, 16000, 1024):
                    af = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
                    af.sample_rate, af.pts = 16000, second * 16000 + start
                    out.mux(aus.encode(af))
        out.mux(vs.encode())
        out.mux(aus.encode())
    partial.replace(path)
    return path


class _OneBytePerSecond(Trickle):
    seconds_per_byte = 1.0


def trickle_case(m: dict[str, Path], *flags: str) -> dict:
    with local_server(_OneBytePerSecond) as where:
        return run(
            [
                "ask",
                "hi",
                "--model",
                str(m["llm"]),
                "--mmproj",
                str(m["mmproj-vision"]),
                "-i",
                f"http://{where}/slow.png",
                "--no-cache",
                *flags,
            ]
        )


DECODE_ONLY = (
    "import sys; from pathlib import Path; from mmchat.media.video import decode_video;"
    "v = decode_video(Path(sys.argv[1]), label='long.mp4'); print(len(v.frames), file=sys.stderr)"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["audio", "video", "url"])
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run the refusal cases on the mmchat package in DIR (e.g. from git archive)",
    )
    args = parser.parse_args()
    m = models()
    rows = []

    def row(case: str, goal: str, result: dict) -> None:
        rows.append({"case": case, "goal": goal, **result})
        print(
            f"  {case}: {result['seconds']:.2f} s, {result['peak_rss_mib']:.0f} MiB, exit {result['exit']}",
            file=sys.stderr,
        )

    audio = ["--model", str(m["llm"]), "--mmproj", str(m["mmproj-audio"]), "--no-cache", "-n", "4", "-t", "0"]
    if args.only in (None, "audio"):
        wav = long_wav()
        row("long audio (3 h WAV)", "< 2 s, < 300 MiB", run(["ask", "hi", "-a", str(wav), *audio]))
        row(
            "audio part (1 min of it)",
            "answers",
            run(["ask", "hi", "-a", str(wav), "--start", "1:00:00", "--end", "1:01:00", *audio]),
        )
        if args.before:
            row(
                "long audio, before",
                "(was 29.6 s, 2.6 GB)",
                run(["ask", "hi", "-a", str(wav), *audio], code=args.before),
            )
    if args.only in (None, "video"):
        video = long_video()
        vision = ["--model", str(m["llm"]), "--no-cache", "-n", "4", "-t", "0", "-c", "4096"]
        row(
            "long video, 32 frames",
            "< 500 MiB",
            run(["ask", "hi", "--video", str(video), "--mmproj", str(m["mmproj-vision"]), *vision]),
        )
        soundtrack = ["ask", "hi", "--video", str(video), "--mmproj", str(m["mmproj-omni"]), *vision]
        row("its 2 h soundtrack", "refused, < 2 s", run(soundtrack))
        if args.before:
            row("its soundtrack, before", "", run(soundtrack, code=args.before))
        row("decode only (32 frames)", "< 500 MiB", run(["-c", DECODE_ONLY, str(video)], python=True))
    if args.only in (None, "url"):
        row("trickling URL (1 B/s), defaults", "ends at the 15 s speed floor, not at 300 s", trickle_case(m))
        row(
            "trickling URL (1 B/s), --url-deadline 5",
            "ends at the 5 s deadline",
            trickle_case(m, "--url-deadline", "5"),
        )
    report("bounds", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
