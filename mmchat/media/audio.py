"""Audio bytes become mono float32 samples at the rate the model asks for.

soundfile (libsndfile) reads WAV, FLAC, Ogg Vorbis/Opus and MP3 quickly and exactly; PyAV
(FFmpeg's libraries, linked into its wheel: no ffmpeg binary) reads the rest: M4A/AAC,
WebM, and the soundtrack of a video file, whose video packets are skipped, never decoded.
Either way the channels are averaged to mono and soxr resamples (its HQ filter is cleaner
than FFmpeg's default swresample, and one resampler for every format means the same sound
gives the same samples whichever container it came in).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmchat.errors import MediaError
from mmchat.media import Audio, opened
from mmchat.quiet import captured_stderr

__all__ = ["audio_from_array", "decode_audio"]

_BLOCK_FRAMES = 1 << 18  # frames per read from libsndfile


Segment = tuple[float, float | None]  # seconds: start, and end (None: to the end)


def decode_audio(
    data: bytes | Path, *, label: str, sample_rate: int, start: float | None = None, end: float | None = None
) -> Audio:
    """Decode audio (or a video's soundtrack), from its bytes or its file, to mono float32 at
    `sample_rate` Hz; with `start`/`end` (seconds), only that part is decoded."""
    if not isinstance(data, Path) and not data:
        raise MediaError(f"{label} is empty: choose an audio file with sound in it")
    segment = (start or 0.0, end)
    frames = _read_soundfile(data, label, segment)
    if frames is None:
        frames = _read_pyav(data, label, segment)
    samples, rate = frames
    if start and samples.shape[0] == 0:
        raise MediaError(f"{label} ends before its start ({start:g} s): choose an earlier --start")
    return _finish(samples, rate, sample_rate, label)


def audio_from_array(
    samples: np.ndarray, sample_rate: int, *, target_rate: int | None = None, label: str = "audio"
) -> Audio:
    """In-memory samples: int16/int32/uint8/float, shape (n,) or (n, channels).

    A 2-D array with at most 16 rows and more columns is read as (channels, n), the layout
    librosa and torchaudio use.
    """
    array = np.asarray(samples)
    if array.ndim == 2 and array.shape[0] <= 16 < array.shape[1]:
        array = array.T
    if array.ndim not in (1, 2):
        raise MediaError(f"{label} has shape {array.shape}: pass (n,) or (n, channels) samples")
    if array.ndim == 1:
        array = array[:, None]
    return _finish(_to_float(array, label), sample_rate, target_rate or sample_rate, label)


def _finish(samples: np.ndarray, rate: int, target_rate: int, label: str) -> Audio:
    """(n, channels) float32 -> mono, resampled, clipped to [-1, 1]."""
    if samples.size == 0 or samples.shape[0] == 0:
        raise MediaError(f"{label} contains no audio samples: choose a recording with sound in it")
    if rate <= 0 or target_rate <= 0:
        raise MediaError(f"{label} has sample rate {rate} Hz: the rate must be positive")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    mono = np.nan_to_num(mono.astype(np.float32, copy=False))
    if rate != target_rate:
        import soxr

        mono = soxr.resample(mono, rate, target_rate, quality="HQ")
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
    return Audio(samples=np.ascontiguousarray(mono), sample_rate=target_rate, source=label)


def _to_float(array: np.ndarray, label: str) -> np.ndarray:
    """Integer PCM scaled to [-1, 1); floats kept as they are."""
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(np.float32, copy=False)
    if kind == "i":
        return (array / float(2 ** (8 * array.dtype.itemsize - 1))).astype(np.float32)
    if kind == "u":
        half = float(2 ** (8 * array.dtype.itemsize - 1))
        return ((array - half) / half).astype(np.float32)
    raise MediaError(f"{label} has samples of type {array.dtype}: pass integer PCM or float samples")


def _read_soundfile(data: bytes | Path, label: str, segment: Segment) -> tuple[np.ndarray, int] | None:
    """libsndfile's formats, or None to let FFmpeg try.

    Read in blocks: a damaged header can claim trillions of frames, and soundfile.read
    would try to allocate them all up front.
    """
    import soundfile

    blocks: list[np.ndarray] = []
    start, end = segment
    try:
        with captured_stderr(), soundfile.SoundFile(opened(data)) as f:  # libmpg123 warns on fd 2
            rate = int(f.samplerate)
            if start and rate > 0:
                first = round(start * rate)
                if f.frames > 0 and first >= f.frames:
                    raise MediaError(
                        f"{label} is {f.frames / rate:.1f} s long, start {start:g} s is past its end: "
                        "choose an earlier --start"
                    )
                f.seek(first)
            left = round((end - start) * rate) if end is not None else -1
            while left and len(
                block := f.read(
                    _BLOCK_FRAMES if left < 0 else min(left, _BLOCK_FRAMES), dtype="float32", always_2d=True
                )
            ):
                blocks.append(block)
                left = left - len(block) if left > 0 else left
    except (RuntimeError, TypeError, ValueError, OSError):  # LibsndfileError: FFmpeg is next
        return None
    if not blocks:
        return None  # an empty WAV: FFmpeg will say the same, or find more
    return np.concatenate(blocks), rate


def _read_pyav(data: bytes | Path, label: str, segment: Segment) -> tuple[np.ndarray, int]:
    """Demux and decode the first audio stream with PyAV; nothing else is decoded."""
    import av

    try:
        container = av.open(opened(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError):
        raise MediaError(
            f"cannot decode {label} as audio: an unknown format or a damaged file;"
            " check that it plays in a media player"
        ) from None
    with container:
        if not container.streams.audio:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise MediaError(f"{label} has no audio track (only {kinds}): choose a file with sound")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        rate = 0
        trim = _Trim(segment, float(stream.time_base or 0))
        if segment[0] > 1.0 and stream.time_base:
            try:
                container.seek(int(segment[0] / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                pass  # decode from the beginning instead
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet costs a few ms of sound, not the file
                for frame in frames:
                    rate = rate or frame.sample_rate
                    chunks.append(trim(frame, _frame_samples(frame)))
                if trim.done:
                    break
        except av.error.FFmpegError as exc:
            if not chunks:
                raise MediaError(f"cannot decode {label} as audio ({exc}): check the file") from None
    if not chunks and not segment[0]:
        raise MediaError(f"{label} contains no audio samples: choose a recording with sound in it")
    return (np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)), rate


class _Trim:
    """Keeps the samples of decoded frames that fall in [start, end), by each frame's time."""

    def __init__(self, segment: Segment, time_base: float):
        (self.start, self.end), self.tb, self.cursor, self.done = segment, time_base, None, False

    def __call__(self, frame, samples: np.ndarray) -> np.ndarray:
        if not self.start and self.end is None:
            return samples
        rate = frame.sample_rate or 1
        t0 = frame.pts * self.tb if frame.pts is not None and self.tb else (self.cursor or 0.0)
        self.cursor = t0 + len(samples) / rate
        lo = max(0, round((self.start - t0) * rate))
        hi = len(samples) if self.end is None else max(0, round((self.end - t0) * rate))
        if self.end is not None and self.cursor >= self.end:
            self.done = True
        return samples[lo:hi]


def _frame_samples(frame) -> np.ndarray:
    """An AudioFrame as float32 (n, 1), mixed down per frame: a stream may change layout."""
    channels = len(frame.layout.channels)
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array.T  # (channels, n) -> (n, channels)
    else:
        array = array.reshape(-1, channels)  # (1, n * channels), interleaved
    return _to_float(array, "audio frame").mean(axis=1, keepdims=True, dtype=np.float32)
