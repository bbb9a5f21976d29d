"""Benchmark: a screen recording whose frames mostly repeat, with and without skipping unchanged frames.

A 60 s H.264 clip of slides (640x360, 10 fps) that changes 5 times (one word, then whole slides),
asked about with mmchat's defaults (1 frame a second, at most 32 frames) on the real llama.cpp path
with the tiny vision pair, side by side in one process, the media cache off so each run encodes:

  skip       the default: a frame no different from the last one sent is "[mm:ss-mm:ss] unchanged"
  keep-all   --keep-all-frames: every sampled frame is encoded

Prints a table (frames encoded, encode seconds, the ratio) and writes bench/results/frames.json.
The encode time scales with the frames encoded, so the ratio holds for a real projector too: with
the SigLIP-sized one (FIXTURES.md section 6, about a minute a frame on 2 cores) keep-all is 32
minutes of encoding. Goal (issue 28): skip at most 0.2x keep-all.

    python -m bench.frames [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results" / "frames.json"
GOAL = 0.2

#: (what the slide says, seconds it is shown): 60 s, 5 changes
SLIDES = [
    ("Revenue grew in March", 14),
    ("Revenue grew in April", 10),  # one word
    ("Costs fell by a tenth", 12),
    ("Hiring: two engineers", 9),
    ("Questions?", 8),
    ("Thank you", 7),
]


def clip() -> Path:
    from bench.support import slide, slides_video

    path = CACHE / "slides-60s.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        slides_video(path, [(slide(words), seconds) for words, seconds in SLIDES])
    return path


def run(repeat: int) -> dict:
    from bench.support import write_all
    from mmchat import Runner
    from mmchat.messages import user_message, video_part

    files = write_all(CACHE / "tiny")
    video = clip()
    rows: dict[str, list[dict]] = {"skip": [], "keep-all": []}
    with Runner(files["llm"], files["mmproj-vision"], n_ctx=8192, threads=2, cache=False) as runner:
        for _ in range(repeat):
            for name, keep in (("skip", False), ("keep-all", True)):
                runner.forget()
                part = video_part(str(video), keep_all_frames=keep)
                reply = runner.chat([user_message("What changed?", [part])], max_tokens=1, temperature=0)
                rows[name].append(
                    {
                        "encode_s": reply.timings.media_encode,
                        "image_tokens": reply.usage.image_tokens,
                        "frames_skipped": reply.usage.frames_skipped,
                        "encoded_media": reply.usage.encoded_media,
                    }
                )
    summary = {
        name: {
            "encode_s": statistics.median(r["encode_s"] for r in runs),
            "frames_encoded": runs[0]["encoded_media"],
            "frames_skipped": runs[0]["frames_skipped"],
            "image_tokens": runs[0]["image_tokens"],
        }
        for name, runs in rows.items()
    }
    summary["ratio"] = summary["skip"]["encode_s"] / summary["keep-all"]["encode_s"]
    return {"machine": platform.machine(), "repeat": repeat, "runs": rows, "summary": summary, "goal": GOAL}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    result = run(parser.parse_args().repeat)
    s = result["summary"]
    print(f"{'':10} {'encoded':>8} {'skipped':>8} {'image tokens':>13} {'encode s':>9}")
    for name in ("skip", "keep-all"):
        r = s[name]
        print(
            f"{name:10} {r['frames_encoded']:>8} {r['frames_skipped']:>8} {r['image_tokens']:>13} {r['encode_s']:>9.3f}"
        )
    print(f"skip / keep-all encode time: {s['ratio']:.3f} (goal <= {GOAL})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
