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

import numpy as np

from mmchat.config import DEFAULT_VIDEO_AUDIO_PIECE
from mmchat.media import Audio, Image
from mmchat.media.video import Video, fine_stamps, stamp

__all__ = ["video_segments"]

_MIN_PIECE = 0.1  # seconds: shorter soundtrack pieces say nothing and are dropped


def video_segments(
    video: Video, min_audio_piece: float = DEFAULT_VIDEO_AUDIO_PIECE, pairs: bool = False
) -> list[str | Image | Audio]:
    """What the model sees, in time order: "[mm:ss]", the frame, and the sound since the last piece.

    Consecutive frames' sound is joined until a piece lasts `min_audio_piece` seconds:
    whisper-style encoders pad every piece to a 30 s window, so one piece per frame of a
    short clip would cost 750 tokens a second. With `pairs` (Qwen-VL projectors), frames go
    two by two under one timestamp, marked to be encoded as one temporal patch: half the tokens.
    """
    fine = fine_stamps([f.time for f in video.frames])
    out: list[str | Image | Audio] = []
    pending: list[Audio] = []
    frames = list(enumerate(video.frames))
    groups = [frames[i : i + 2] for i in range(0, len(frames), 2)] if pairs else [[f] for f in frames]
    for group in groups:
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
    return out


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
