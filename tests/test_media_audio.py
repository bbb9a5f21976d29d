"""media/audio.py: the same sound in any container gives the same mono samples at the model's rate."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile

from mmchat.errors import MediaError
from mmchat.media import Audio
from mmchat.media.audio import audio_from_array, decode_audio

RATE = 44_100  # files are written at CD rate; the model asks for 16 kHz
MODEL_RATE = 16_000


def tone(freq: float = 440.0, seconds: float = 1.0, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def with_soundfile(samples: np.ndarray, fmt: str, subtype: str | None = None, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def with_pyav(
    samples: np.ndarray | None,
    fmt: str,
    codec: str = "aac",
    rate: int = RATE,
    video: str | None = None,
) -> bytes:
    """Write (n,) or (n, 2) float samples, and/or a 32x32 picture track, with FFmpeg's encoders."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        vstream = out.add_stream(video, rate=25) if video else None
        astream = None
        if samples is not None:
            layout = "stereo" if samples.ndim == 2 else "mono"
            astream = out.add_stream(codec, rate=rate, layout=layout)
        if vstream is not None:  # every stream is added before the first packet is muxed
            vstream.width = vstream.height = 32
            vstream.pix_fmt = "yuv420p"
            for i in range(25):
                picture = np.full((32, 32, 3), i * 10, np.uint8)
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            out.mux(vstream.encode())
        if astream is not None:
            ctx = astream.codec_context
            planar = ctx.format.is_planar
            two_d = samples.reshape(len(samples), -1)  # (n, channels)
            step = ctx.frame_size or 1024
            for start in range(0, len(two_d), step):
                block = two_d[start : start + step]
                if ctx.format.name.startswith("s16"):
                    block = (block * 32767).astype(np.int16)
                array = np.ascontiguousarray(block.T if planar else block.reshape(1, -1))
                frame = av.AudioFrame.from_ndarray(array, format=ctx.format.name, layout=astream.layout.name)
                frame.sample_rate, frame.pts = rate, start
                out.mux(astream.encode(frame))
            out.mux(astream.encode())
    return buf.getvalue()


def dominant_hz(audio: Audio) -> float:
    spectrum = np.abs(np.fft.rfft(audio.samples * np.hanning(len(audio.samples))))
    return float(np.argmax(spectrum)) * audio.sample_rate / len(audio.samples)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def decode(data: bytes, label: str = "voice.m4a", rate: int = MODEL_RATE) -> Audio:
    audio = decode_audio(data, label=label, sample_rate=rate)
    s = audio.samples
    assert s.dtype == np.float32 and s.ndim == 1 and s.flags.c_contiguous
    assert audio.sample_rate == rate and audio.source == label
    assert np.all(np.abs(s) <= 1.0)
    return audio


def mismatch(reference: np.ndarray, got: np.ndarray, max_lag: int = 40) -> float:
    """Relative RMS difference after lining `got` up with `reference`.

    Encoders add delay; for a steady sine any delay is a phase shift, so searching one period
    (36 samples of 440 Hz at 16 kHz) finds the alignment without sliding off the ends.
    """
    core = reference[1000:-1000]
    window = got[1000 - max_lag : 1000 + len(core) + max_lag]
    lag = int(np.argmax(np.correlate(window, core, mode="valid")))
    return rms(window[lag : lag + len(core)] - core) / rms(core)


SINE = tone()
FORMATS = {
    "wav": lambda: with_soundfile(SINE, "WAV"),
    "wav-float": lambda: with_soundfile(SINE, "WAV", "FLOAT"),
    "flac": lambda: with_soundfile(SINE, "FLAC"),
    "ogg-vorbis": lambda: with_soundfile(SINE, "OGG", "VORBIS"),
    "ogg-opus": lambda: with_soundfile(tone(rate=48_000), "OGG", "OPUS", rate=48_000),
    "mp3": lambda: with_soundfile(SINE, "MP3"),
    "m4a-aac": lambda: with_pyav(SINE, "ipod"),
    "adts-aac": lambda: with_pyav(SINE, "adts"),
    "webm-opus": lambda: with_pyav(tone(rate=48_000), "webm", "libopus", rate=48_000),
}


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return decode(with_soundfile(SINE, "WAV")).samples


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_to_the_same_sound(name: str, reference: np.ndarray) -> None:
    audio = decode(FORMATS[name](), label=f"tone.{name}")
    assert abs(audio.duration - 1.0) < 0.1  # encoders may add a frame of priming/padding
    assert abs(dominant_hz(audio) - 440) < 2
    assert abs(rms(audio.samples) - rms(reference)) < 0.05 * rms(reference)
    assert mismatch(reference, audio.samples) < 0.05  # lossy codecs measure 0.4-2.5%


def test_lossless_formats_are_sample_exact(reference: np.ndarray) -> None:
    flac = decode(with_soundfile(SINE, "FLAC")).samples
    assert len(flac) == len(reference) == MODEL_RATE
    assert np.max(np.abs(flac - reference)) < 1e-3  # 16-bit quantisation only


def test_resampling_keeps_the_pitch() -> None:
    for file_rate in (8_000, 22_050, 44_100, 48_000):
        audio = decode(with_soundfile(tone(1000.0, rate=file_rate), "WAV", rate=file_rate))
        assert len(audio.samples) == MODEL_RATE
        assert abs(dominant_hz(audio) - 1000) < 2
        assert abs(rms(audio.samples) - 0.5 / np.sqrt(2)) < 0.01  # loudness kept too


def test_the_model_rate_is_what_comes_out() -> None:
    audio = decode(with_soundfile(SINE, "WAV"), rate=24_000)
    assert len(audio.samples) == 24_000 and abs(dominant_hz(audio) - 440) < 2


def test_stereo_is_mixed_down_to_the_mean_of_channels() -> None:
    left_only = np.stack([SINE, np.zeros_like(SINE)], axis=1)
    audio = decode(with_soundfile(left_only, "WAV"))
    assert abs(np.max(np.abs(audio.samples)) - 0.25) < 0.01  # half as loud, same pitch
    assert abs(dominant_hz(audio) - 440) < 2
    opposite = np.stack([SINE, -SINE], axis=1)
    assert np.max(np.abs(decode(with_soundfile(opposite, "WAV")).samples)) < 1e-3


def test_stereo_aac_planar_frames() -> None:
    both = np.stack([tone(440.0), tone(660.0)], axis=1)
    audio = decode(with_pyav(both, "ipod"))
    spectrum = np.abs(np.fft.rfft(audio.samples))
    hz = np.fft.rfftfreq(len(audio.samples), 1 / MODEL_RATE)
    peaks = sorted(hz[np.argsort(spectrum)[-2:]])
    assert abs(peaks[0] - 440) < 2 and abs(peaks[1] - 660) < 2


def test_packed_integer_pcm_through_ffmpeg() -> None:
    """16-bit interleaved PCM in Matroska: a packed sample format, read by PyAV."""
    both = np.stack([SINE, SINE], axis=1)
    audio = decode(with_pyav(both, "matroska", "pcm_s16le"), label="tone.mka")
    assert len(audio.samples) == MODEL_RATE
    assert abs(rms(audio.samples) - rms(SINE)) < 0.01 and abs(dominant_hz(audio) - 440) < 2


def test_the_soundtrack_of_a_video() -> None:
    data = with_pyav(SINE, "mp4", "aac", video="libx264")
    with av.open(io.BytesIO(data)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
    audio = decode(data, label="clip.mp4")
    assert abs(audio.duration - 1.0) < 0.1 and abs(dominant_hz(audio) - 440) < 2


# --- failures -----------------------------------------------------------------------------


def test_empty_file() -> None:
    with pytest.raises(MediaError, match=r"^voice\.m4a is empty"):
        decode(b"")


def test_zero_length_wav() -> None:
    with pytest.raises(MediaError, match=r"^voice\.m4a contains no audio samples"):
        decode(with_soundfile(np.zeros(0, np.float32), "WAV"))


@pytest.mark.parametrize(
    "data",
    [b"Dear diary, today I recorded nothing.\n" * 20, bytes(2048), np.random.default_rng(0).bytes(8192)],
    ids=["text", "zeros", "noise"],
)
def test_undecodable_bytes(data: bytes) -> None:
    with pytest.raises(MediaError, match=r"^cannot decode voice\.m4a as audio: .*media player$") as info:
        decode(data)
    assert "\n" not in str(info.value)


def test_truncated_m4a() -> None:
    data = with_pyav(SINE, "ipod")
    with pytest.raises(MediaError, match=r"voice\.m4a"):
        decode(data[: len(data) // 3])


def test_video_without_sound() -> None:
    with pytest.raises(MediaError, match=r"^clip\.mp4 has no audio track \(only video\): choose a file"):
        decode(with_pyav(None, "mp4", video="libx264"), label="clip.mp4")


# --- in-memory arrays ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "peak"),
    [
        ((SINE * 32767).astype(np.int16), 0.5),
        ((SINE * 2**31).astype(np.int32), 0.5),
        ((SINE * 127 + 128).astype(np.uint8), 0.5),
        (SINE.astype(np.float64), 0.5),
        (np.full(RATE, 3.0), 1.0),  # clipped to the valid range
    ],
    ids=["int16", "int32", "uint8", "float64", "too-loud"],
)
def test_audio_from_array_dtypes(samples: np.ndarray, peak: float) -> None:
    audio = audio_from_array(samples, RATE, target_rate=MODEL_RATE)
    assert audio.samples.dtype == np.float32 and audio.sample_rate == MODEL_RATE
    assert len(audio.samples) == MODEL_RATE and audio.source == "audio"
    assert abs(np.max(np.abs(audio.samples)) - peak) < 0.02


def test_audio_from_array_layouts() -> None:
    mono = audio_from_array(SINE, RATE, label="mic")
    assert mono.sample_rate == RATE and np.allclose(mono.samples, SINE) and mono.source == "mic"
    frames_first = audio_from_array(np.stack([SINE, SINE], axis=1), RATE)  # (n, channels)
    channels_first = audio_from_array(np.stack([SINE, SINE]), RATE)  # (channels, n)
    assert np.allclose(frames_first.samples, SINE) and np.allclose(channels_first.samples, SINE)


def test_audio_from_array_matches_the_decoded_file(reference: np.ndarray) -> None:
    from_memory = audio_from_array(SINE, RATE, target_rate=MODEL_RATE)
    assert np.max(np.abs(from_memory.samples - reference)) < 1e-3


@pytest.mark.parametrize("samples", [np.zeros(0, np.float32), np.zeros((0, 2)), np.zeros((2, 2, 2)), np.array(["a"])])
def test_audio_from_array_rejects_nonsense(samples: np.ndarray) -> None:
    with pytest.raises(MediaError, match="audio"):
        audio_from_array(samples, RATE)


def test_a_damaged_mp3_decodes_without_the_decoders_chatter(capfd):
    """libmpg123 writes warnings straight to fd 2; a user asked about audio, not its resync notes."""
    t = np.arange(32000) / 16000
    buf = io.BytesIO()
    soundfile.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, format="MP3")
    data = buf.getvalue()
    damaged = data[:400] + bytes(range(256)) * 8 + data[2400:]
    capfd.readouterr()
    audio = decode_audio(damaged, label="talk.mp3", sample_rate=16000)
    assert audio.duration > 0.2  # what survived the damage
    assert capfd.readouterr().err == ""
