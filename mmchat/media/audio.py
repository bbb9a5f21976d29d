"""Audio bytes become mono float32 samples at the rate the model asks for.

soundfile (libsndfile) reads WAV, FLAC, Ogg Vorbis/Opus and MP3 quickly and exactly; PyAV
(FFmpeg's libraries, linked into its wheel: no ffmpeg binary) reads the rest: M4A/AAC,
WebM, and the soundtrack of a video file, whose video packets are skipped, never decoded.
Either way the channels are averaged to mono and soxr resamples (its HQ filter is cleaner
than FFmpeg's default swresample, and one resampler for every format means the same sound
gives the same samples whichever container it came in).
"""

from __future__ import annotations

import io

import numpy as np

from mmchat.errors import MediaError
from mmchat.media import Audio
from mmchat.quiet import captured_stderr

__all__ = ["audio_from_array", "decode_audio"]

_BLOCK_FRAMES = 1 << 18  # frames per read from libsndfile


def decode_audio(data: bytes, *, label: str, sample_rate: int) -> Audio:
    """Decode audio (or a video's soundtrack) to mono float32 at `sample_rate` Hz."""
    if not data:
        raise MediaError(f"{label} is empty: choose an audio file with sound in it")
    frames = _read_soundfile(data)
    if frames is None:
        frames = _read_pyav(data, label)
    samples, rate = frames
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


def _read_soundfile(data: bytes) -> tuple[np.ndarray, int] | None:
    """libsndfile's formats, or None to let FFmpeg try.

    Read in blocks: a damaged header can claim trillions of frames, and soundfile.read
    would try to allocate them all up front.
    """
    import soundfile

    blocks: list[np.ndarray] = []
    try:
        with captured_stderr(), soundfile.SoundFile(io.BytesIO(data)) as f:  # libmpg123 warns on fd 2
            rate = int(f.samplerate)
            while len(block := f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(block)
    except (RuntimeError, TypeError, ValueError, OSError):  # LibsndfileError: FFmpeg is next
        return None
    if not blocks:
        return None  # an empty WAV: FFmpeg will say the same, or find more
    return np.concatenate(blocks), rate


def _read_pyav(data: bytes, label: str) -> tuple[np.ndarray, int]:
    """Demux and decode the first audio stream with PyAV; nothing else is decoded."""
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
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
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet costs a few ms of sound, not the file
                for frame in frames:
                    rate = rate or frame.sample_rate
                    chunks.append(_frame_samples(frame))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise MediaError(f"cannot decode {label} as audio ({exc}): check the file") from None
    if not chunks:
        raise MediaError(f"{label} contains no audio samples: choose a recording with sound in it")
    return np.concatenate(chunks), rate


def _frame_samples(frame) -> np.ndarray:
    """An AudioFrame as float32 (n, 1), mixed down per frame: a stream may change layout."""
    channels = len(frame.layout.channels)
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array.T  # (channels, n) -> (n, channels)
    else:
        array = array.reshape(-1, channels)  # (1, n * channels), interleaved
    return _to_float(array, "audio frame").mean(axis=1, keepdims=True, dtype=np.float32)
