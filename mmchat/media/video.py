"""Video files become a few timestamped RGB frames, and the sound between them.

- PyAV (FFmpeg inside its wheels) reads MP4, WebM, MKV, MOV, animated GIF, ... Frames are
  sampled at `fps`; past `max_frames` they are spread over the whole segment instead.
- Cost follows the frames kept, not the file's length: only picked frames are converted
  (scaled and made RGB in one swscale call), and sparse targets are reached by seeking to the
  keyframe before each, so 32 frames of a 2-hour video cost about 32 seeks. Dense targets,
  or a file whose seeking misbehaves, are decoded forward.
- Phone clips are turned upright and anamorphic pixels made square. For a model that hears,
  the segment's sound is cut at the frame times: each frame is followed by its sound.

Decoding only: how frames and sound are laid out for a prompt is mmchat.engine.layout's job.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import numpy as np

from mmchat.config import DEFAULT_VIDEO_FRAME_MAX_SIDE
from mmchat.errors import InputError, MediaError
from mmchat.media import Audio, Image, opened
from mmchat.options import VideoOptions  # per-part options are checked where all options are
from mmchat.values import parse_time

__all__ = ["Frame", "Video", "VideoOptions", "decode_video", "fine_stamps", "parse_time", "sample_times", "stamp"]

_SEEK_MIN_GAP = 2.0  # seconds between targets below which decoding forward beats seeking
_EPS = 1e-3  # a frame this close before a target counts as at it (timestamp rounding)


@dataclass(frozen=True)
class Frame:
    time: float  # seconds from the start of the video
    image: Image  # labelled like "clip.mp4@00:05"


@dataclass(frozen=True, eq=False)
class Video:
    """Picked frames in time order, and the sound between them.

    audio[i] covers [frames[i].time, frames[i+1].time), except that the first piece starts at
    the segment start and the last runs to its end: together they are the segment's sound.
    Empty when no audio was asked for or the file has none; None for a piece with no samples.
    """

    frames: tuple[Frame, ...]
    audio: tuple[Audio | None, ...]
    duration: float  # of the whole file
    source: str


def sample_times(duration: float, options: VideoOptions) -> list[float]:
    """Target times: the fps grid over [start, end), or max_frames centred in equal slices."""
    start = options.start or 0.0
    end = duration if options.end is None else min(options.end, duration)
    if not end > start:
        return []
    count = max(1, math.ceil((end - start) * options.fps - 1e-9))
    if count <= options.max_frames:
        return [start + k / options.fps for k in range(count)]
    step = (end - start) / options.max_frames
    return [start + (k + 0.5) * step for k in range(options.max_frames)]


def decode_video(
    src: bytes | Path,
    *,
    label: str,
    options: VideoOptions = VideoOptions(),
    max_side: int | None = DEFAULT_VIDEO_FRAME_MAX_SIDE,
    audio_rate: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Video:
    """Sample a video's frames (and, given `audio_rate`, its sound) from a file or its bytes."""
    import av

    opener = functools.partial(_open, src, label)
    try:
        with _Reader(opener, label) as reader:
            duration, start = reader.duration(), options.start or 0.0
            if duration <= 0:
                raise MediaError(f"{label} is a zero-length video (no frames): choose a recording with frames in it")
            if start >= duration:
                raise MediaError(
                    f"{label} is {duration:.1f} s long, start {start:g} s is past its end: choose an earlier start"
                )
            targets = sample_times(duration, options)
            if all(b - a >= _SEEK_MIN_GAP for a, b in itertools.pairwise(targets)):
                reader.threads = reader.stream.thread_type = "SLICE"  # seeks: frame threads refill after each
            fine, frames = fine_stamps(targets), []
            for i, target in enumerate(targets):
                vf, t = reader.first_at(target)
                if vf is not None and (not frames or t > frames[-1].time + 1e-6):  # not the last one again
                    frames.append(Frame(t, reader.to_image(vf, f"{label}@{stamp(t, duration, fine)}", max_side)))
                if progress is not None:
                    progress(len(targets) if reader.at_end else i + 1, len(targets))
                if reader.at_end:
                    break
            if not frames:
                raise MediaError(f"{label} has no decodable video frames: check that it plays in a media player")
        audio: tuple[Audio | None, ...] = ()
        if options.audio and audio_rate:
            end = duration if options.end is None else min(options.end, duration)
            times = [f.time for f in frames]
            audio = _soundtrack(opener, reader.origin, (start, end), times, audio_rate, label, duration)
    except (av.error.FFmpegError, OSError) as exc:  # what the file did to FFmpeg mid-way
        raise MediaError(f"cannot decode {label} as a video ({_reason(exc)}): check that it plays") from None
    return Video(tuple(frames), audio, duration, label)


def _open(src: bytes | Path, label: str) -> Any:
    """The file opened afresh: the first pass, the soundtrack's, or a restart without seeking."""
    import av

    try:
        return av.open(opened(src), mode="r")
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise MediaError(f"cannot open {label} as a video ({_reason(exc)}): check that the file is complete") from None


class _Reader:
    """One file's video stream: its clock, and the first frame at or after a given time."""

    def __init__(self, opener: Callable[[], Any], label: str):
        from av.video.reformatter import VideoReformatter

        self._open, self.label, self.threads = opener, label, "AUTO"  # frame threads for decoding forward
        self._start()
        self.seekable, self.at_end, self._back = True, False, 0.0
        self._scaler = VideoReformatter()  # keeps its swscale context from frame to frame
        rate = self.stream.average_rate or self.stream.guessed_rate
        self._tolerance = max(0.25, 2.0 / float(rate)) if rate else 0.5  # a seek that lands later is broken

    def _start(self) -> None:
        self.container = container = self._open()
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            container.close()
            if "audio" in kinds:
                raise MediaError(f"{self.label} has no video stream: pass it with --audio to use its sound")
            what = f"only {', '.join(kinds)}" if kinds else "no streams at all"
            raise MediaError(f"{self.label} has no video stream ({what}): choose a video file")
        self.stream = stream = container.streams.video[0]
        stream.thread_type = self.threads
        self.tb = stream.time_base or Fraction(1, 1000)
        self.origin = float(stream.start_time * self.tb) if stream.start_time is not None else 0.0
        self._frames, self._current = self._decode(), (None, 0.0)  # the last frame decoded, and its time

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    def duration(self) -> float:
        """The stream's, its DURATION tag (Matroska), the container's, or its last packet's end."""
        import av

        if self.stream.duration:
            return float(self.stream.duration * self.tb)
        if tag := self.stream.metadata.get("DURATION"):
            try:
                return parse_time(tag)
            except InputError:
                pass
        if self.container.duration:
            return self.container.duration / av.time_base
        ends = [(p.pts + (p.duration or 0)) * self.tb for p in self.container.demux(self.stream) if p.pts is not None]
        self._restart()
        return max(float(max(ends)) - self.origin, 1e-3) if ends else 0.0

    def first_at(self, target: float) -> tuple[Any, float]:
        """The first frame at or after `target`, or the last frame when the video ends before it."""
        import av

        if self._current[0] is not None and self._current[1] >= target - _EPS:
            return self._current
        if self.seekable and target - self._current[1] > max(_SEEK_MIN_GAP, self._back):
            try:
                self.container.seek(int((target + self.origin) / self.tb), stream=self.stream, backward=True)
                self._frames = self._decode()
                first = next(self._frames, None)
            except av.error.FFmpegError:
                first = None
            if first is None or first[1] > target + self._tolerance:
                self.seekable, self.threads = False, "AUTO"  # no seeking, or the index lied: decode forward
                self._restart()
            else:
                self._back = max(self._back, target - first[1])  # how far before a target seeks land
                self._current = first
                if first[1] >= target - _EPS:
                    return first
        for frame in self._frames:
            self._current = frame
            if frame[1] >= target - _EPS:
                return frame
        self.at_end = True
        return self._current

    def _restart(self) -> None:
        self.container.close()
        self._start()

    def _decode(self) -> Iterator[tuple[Any, float]]:
        """Frames and their times (counted on from the last one for a frame without)."""
        step, t, tb = 1.0 / float(self.stream.average_rate or 25), None, float(self.tb)
        for vf in _decoded(self.container, self.stream):
            t = vf.pts * tb - self.origin if vf.pts is not None else (0.0 if t is None else t + step)
            yield vf, t

    def to_image(self, vf: Any, label: str, max_side: int | None) -> Image:
        """Square pixels, upright, long side at most `max_side`, RGB: scaled before conversion."""
        width, height = vf.width, vf.height
        sar = self.stream.sample_aspect_ratio or self.stream.codec_context.sample_aspect_ratio
        if sar and sar > 0 and sar != 1:
            width = max(1, round(width * sar))
        if max_side is not None and max(width, height) > max_side:
            scale = max_side / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        rgb = self._scaler.reformat(vf, width, height, "rgb24", interpolation="AREA").to_ndarray()
        turns = round((vf.rotation or 0) / 90) % 4  # counterclockwise, as the display matrix says
        return Image(pixels=np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb), source=label)


def _soundtrack(
    opener: Callable[[], Any],
    origin: float,
    segment: tuple[float, float],
    times: list[float],
    rate: int,
    label: str,
    duration: float,
) -> tuple[Audio | None, ...]:
    """The segment's sound, mono at `rate`, cut at the frame times; () when the file has none."""
    import av
    import soxr

    (start, end), pending, resampler, native, cursor = segment, [], None, 0, 0.0

    def emit(chunk: np.ndarray) -> None:
        nonlocal filled
        n = min(len(chunk), len(sound) - filled)
        sound[filled : filled + n] = chunk[:n]
        filled += n

    with opener() as container:
        if not container.streams.audio:
            return ()
        stream = container.streams.audio[0]  # only its packets are decoded
        sound, filled = np.zeros(round((end - start) * rate) + 1, np.float32), 0  # filled in place
        tb = float(stream.time_base or Fraction(1, 1000))
        if start > 1.0:
            try:
                container.seek(int((start + origin) / tb), stream=stream, backward=True)
            except av.error.FFmpegError:
                pass  # decode from the beginning instead
        for af in _decoded(container, stream):
            if native and af.sample_rate != native:
                break  # the rate changed mid-stream: keep what came before
            t0 = af.pts * tb - origin if af.pts is not None else cursor
            if resampler is None:
                native, cursor = af.sample_rate, min(t0, start)
                resampler = soxr.ResampleStream(native, rate, 1, dtype="float32", quality="HQ")
            if t0 > cursor + 0.05:  # the sound starts late or has a gap: silence until it resumes
                if (gap := min(t0, end) - max(start, cursor)) > 0:
                    pending.append(np.zeros(round(gap * native), np.float32))
                cursor = t0
            samples = _mono(af)
            lo, hi = (min(len(samples), max(0, round((t - cursor) * native))) for t in (start, end))
            if hi > lo:
                pending.append(samples[lo:hi])
            if len(pending) >= 64:  # resample in blocks: soxr's per-call cost is not per sample
                emit(resampler.resample_chunk(np.concatenate(pending)))
                pending.clear()
            cursor += len(samples) / native
            if cursor >= end:
                break
    if resampler is None:
        return ()
    emit(resampler.resample_chunk(np.concatenate([*pending, np.zeros(0, np.float32)]), last=True))
    sound = np.clip(sound[:filled], -1.0, 1.0, out=sound[:filled])
    return _cut(sound, segment, times, rate, label, duration)


def _cut(
    sound: np.ndarray, segment: tuple[float, float], times: list[float], rate: int, label: str, duration: float
) -> tuple[Audio | None, ...]:
    """The segment's sound in one piece per frame: from each frame's time to the next one's."""
    start, end = segment
    bounds = [start, *(min(max(t, start), end) for t in times[1:]), end]
    cuts = [min(len(sound), round((b - start) * rate)) for b in bounds]
    fine, pieces = fine_stamps(times), []
    for i, t in enumerate(times):
        chunk = sound[cuts[i] : max(cuts[i], cuts[i + 1])]
        source = f"{label}@{stamp(t, duration, fine)} sound"
        pieces.append(Audio(samples=chunk, sample_rate=rate, source=source) if len(chunk) else None)
    return tuple(pieces)


def _mono(af: Any) -> np.ndarray:
    """An AudioFrame's samples as mono float32, like media.audio's (channels averaged)."""
    from mmchat.media.audio import _frame_samples

    if af.format.name != "fltp":  # integer or interleaved samples: the general path
        return _frame_samples(af)[:, 0]
    planes = [np.frombuffer(plane, np.float32, af.samples) for plane in af.planes]  # no copies
    return planes[0] if len(planes) == 1 else np.mean(planes, axis=0, dtype=np.float32)


def _decoded(container: Any, stream: Any) -> Iterator[Any]:
    """Decoded frames of one stream; a damaged packet is skipped, a damaged tail ends it."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.error.FFmpegError, OSError):
            return
        try:
            yield from packet.decode()
        except av.error.FFmpegError:
            continue


def _reason(exc: BaseException) -> str:
    """FFmpeg's words, without the errno and the path that PyAV adds."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(text.split()) or type(exc).__name__


def fine_stamps(times: list[float]) -> bool:
    """Stamps carry tenths of a second when frames are less than a second apart."""
    return any(b - a < 1.0 - 1e-6 for a, b in itertools.pairwise(times))


def stamp(seconds: float, duration: float, fine: bool = False) -> str:
    """mm:ss, or h:mm:ss for videos of an hour or more; with tenths when `fine`."""
    whole, tenth = divmod(int(seconds * 10 + 1e-6), 10)
    hours, rest = divmod(whole, 3600)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if duration >= 3600 else f"{whole // 60:02d}:{whole % 60:02d}"
    return f"{text}.{tenth}" if fine else text
