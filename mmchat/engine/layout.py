"""How a decoded Video becomes what the model sees; shared by every backend.

A `Video` (media/video.py) is frames and the sound between them. Here it is laid out for the
prompt: a ``[mm:ss]`` stamp before each frame (tenths when frames are under a second apart),
the frame, then the soundtrack since the last piece, joined into pieces long enough to be
worth an audio encoder's fixed window. For Qwen-VL projectors, frames go in pairs under one
stamp, marked to be encoded as one temporal patch. Pure numpy: no llama_cpp here.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

from mmchat.config import DEFAULT_FRAME_CHANGE, DEFAULT_VIDEO_AUDIO_PIECE, FRAME_TILE
from mmchat.media import Audio, Image
from mmchat.media.video import Video, fine_stamps, stamp

__all__ = ["Unchanged", "changed", "skipped_frames", "video_segments"]

_MIN_PIECE = 0.1  # seconds: shorter soundtrack pieces say nothing and are dropped


class Unchanged(str):
    """The text that stands for frames skipped as unchanged ("[00:12-00:41] unchanged"), and how many."""

    frames: int

    def __new__(cls, text: str, frames: int) -> Unchanged:
        made = super().__new__(cls, text)
        made.frames = frames
        return made


def skipped_frames(segments: Sequence[object]) -> int:
    """How many frames the Unchanged texts among `segments` stand for."""
    return sum(s.frames for s in segments if isinstance(s, Unchanged))


def video_segments(
    video: Video, min_audio_piece: float = DEFAULT_VIDEO_AUDIO_PIECE, pairs: bool = False, keep_all: bool = False
) -> list[str | Image | Audio]:
    """What the model sees, in time order: "[mm:ss]", the frame, and the sound since the last piece.

    Consecutive frames' sound is joined until a piece lasts `min_audio_piece` seconds:
    whisper-style encoders pad every piece to a 30 s window, so one piece per frame of a
    short clip would cost 750 tokens a second. With `pairs` (Qwen-VL projectors), frames go
    two by two under one timestamp, marked to be encoded as one temporal patch: half the tokens.
    Unless `keep_all`, frames (or pairs) no different from the last kept one are one line of text,
    "[00:12-00:41] unchanged": a screen recording or slides cost what their changes cost. Their sound stays.
    """
    fine = fine_stamps([f.time for f in video.frames])
    out: list[str | Image | Audio] = []
    pending: list[Audio] = []
    frames = list(enumerate(video.frames))
    groups = [frames[i : i + 2] for i in range(0, len(frames), 2)] if pairs else [[f] for f in frames]
    kept: np.ndarray | None = None  # the last frame sent: drift adds up against it until it shows
    run: list[float] = []  # times of the frames skipped since then, said in one line where the run began
    run_at = 0
    for group in groups:
        if not keep_all and kept is not None and not any(changed(kept, f.image.pixels) for _, f in group):
            if not run:  # its line goes where the run begins, written when it ends
                run_at = len(out)
                out.append("")
            run += [f.time for _, f in group]
        else:
            if run:
                out[run_at], run = _unchanged(run, video.duration, fine), []
            kept = group[-1][1].image.pixels
            out.append(f"[{stamp(group[0][1].time, video.duration, fine)}]")
            out += _paired([f.image for _, f in group])
        for i, _ in group:
            if i < len(video.audio) and video.audio[i] is not None:
                pending.append(video.audio[i])
        last = group[-1][0] == len(video.frames) - 1
        if pending and (last or sum(p.duration for p in pending) >= min_audio_piece):
            piece = _join(pending)
            pending = []
            if piece.duration >= _MIN_PIECE and np.any(piece.samples):
                out.append(piece)
    if run:
        out[run_at] = _unchanged(run, video.duration, fine)
    return out


def changed(a: np.ndarray, b: np.ndarray, threshold: float = DEFAULT_FRAME_CHANGE, tile: int = FRAME_TILE) -> bool:
    """Whether a person would see a difference: some tile of the two frames differs by more than
    `threshold` on average. A whole-frame mean would miss one changed word on a slide; a tile catches it."""
    if a.shape != b.shape:
        return True
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
    h, w = diff.shape
    diff = np.pad(diff, ((0, -h % tile), (0, -w % tile)))  # edge tiles count their pixels too (as a mean of fewer)
    tiles = diff.reshape(diff.shape[0] // tile, tile, diff.shape[1] // tile, tile).sum(axis=(1, 3))
    rows = np.minimum(tile, h - np.arange(0, h, tile))[:, None]
    cols = np.minimum(tile, w - np.arange(0, w, tile))[None, :]
    return bool((tiles / (rows * cols)).max() > threshold)


def _unchanged(times: list[float], duration: float, fine: bool) -> Unchanged:
    first, last = stamp(times[0], duration, fine), stamp(times[-1], duration, fine)
    return Unchanged(f"[{first}-{last}] unchanged" if last != first else f"[{first}] unchanged", len(times))


def _paired(images: list[Image]) -> list[Image]:
    """Two frames of one size become a mergeable pair with a shared id; anything else stays."""
    if len(images) != 2 or images[0].pixels.shape != images[1].pixels.shape:
        return images
    key = hashlib.blake2b((images[0].digest() + images[1].digest()).encode(), digest_size=16).hexdigest()
    return [dataclasses.replace(im, merge_key=f"pair:{key}") for im in images]


def _join(pieces: list[Audio]) -> Audio:
    if len(pieces) == 1:
        return pieces[0]
    samples = np.concatenate([p.samples for p in pieces])
    return Audio(samples=samples, sample_rate=pieces[0].sample_rate, source=pieces[0].source)
