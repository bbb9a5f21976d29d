"""The microphone as a media source: `mic:` records until Enter, `mic:SECONDS` a fixed length.

sounddevice (PortAudio) records from the default input: on Linux through ALSA, whose default
device is PulseAudio's or PipeWire's on a desktop (the raw card where no sound server runs),
CoreAudio on macOS, WASAPI/MME on Windows. Samples arrive on PortAudio's thread in blocks of
DEFAULT_MIC_BLOCK_SECONDS; the caller waits for Enter or the length meanwhile and may show
`Recorder.meter()` (elapsed time and input level). A recording becomes a 16-bit WAV that
capture.keep() stores under MMCHAT_HOME/captures, so the log and `--continue` name a file.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import threading
import time
from typing import IO

import numpy as np

from .. import config
from ..errors import MissingTool, SourceError
from ..quiet import captured_stderr
from .part import Location

__all__ = ["Recorder", "Recording", "record", "seconds_of"]

log = logging.getLogger("mmchat.inputs")

_LEVEL_FLOOR_DB = -60.0  # the meter's empty end
_METER_WIDTH = 10


@dataclasses.dataclass(frozen=True)
class Recording:
    """Mono float32 samples at `rate` Hz."""

    samples: np.ndarray = dataclasses.field(repr=False)
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    @property
    def peak_dbfs(self) -> float:
        peak = float(np.max(np.abs(self.samples))) if len(self.samples) else 0.0
        return 20 * math.log10(peak) if peak > 0 else -math.inf

    @property
    def silent(self) -> bool:
        return self.peak_dbfs < config.DEFAULT_MIC_SILENCE_DBFS

    def silence_warning(self) -> str:
        loudest = "no sound at all" if self.peak_dbfs == -math.inf else f"loudest {self.peak_dbfs:.0f} dBFS"
        return (
            f"the recording is silent ({self.seconds:.1f} s, {loudest}): check that the microphone is not muted, "
            "that it is the default input, and that mmchat may use it; it is attached all the same"
        )

    def wav(self) -> bytes:
        """A 16-bit PCM WAV, what every audio decoder reads."""
        import soundfile

        out = io.BytesIO()
        soundfile.write(out, np.clip(self.samples, -1.0, 1.0), self.rate, format="WAV", subtype="PCM_16")
        return out.getvalue()


def seconds_of(where: Location) -> float | None:
    """mic: -> None (until Enter), mic:10 -> 10.0; a length that is not one is refused."""
    rest = where.text.split(":", 1)[1].strip().lstrip("/")
    if not rest:
        return None
    try:
        seconds = float(rest.removesuffix("s"))
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= config.DEFAULT_MIC_MAX_SECONDS:
        raise SourceError(
            f"{where.text}: give the length in seconds, from 0 to {config.DEFAULT_MIC_MAX_SECONDS:g}, "
            "e.g. mic:10 (mic: alone records until Enter)"
        )
    return seconds


def _sounddevice():
    try:
        with captured_stderr():  # ALSA reports every card it probes on fd 2
            import sounddevice
    except OSError:  # the wheels for macOS and Windows carry PortAudio; Linux uses the system's
        raise MissingTool(
            "recording from the microphone needs PortAudio: install libportaudio2 (e.g. sudo apt install libportaudio2)"
        ) from None
    return sounddevice


class Recorder:
    """One recording from the default input: `start()`, wait (`wait()` for a fixed length, or
    for the user), `stop()` for the `Recording`, or `cancel()`. At most `seconds` (or
    DEFAULT_MIC_MAX_SECONDS) are kept; `done` says when that many have arrived."""

    def __init__(self, seconds: float | None = None, rate: int = config.DEFAULT_MIC_SAMPLE_RATE):
        self.seconds, self.rate = seconds, rate
        self.device = ""  # the input's name, once started
        self.started_at: float | None = None  # perf_counter() when start() was called
        self.first_sample_at: float | None = None  # perf_counter() when the first block arrived
        self._blocks: list[np.ndarray] = []
        self._frames = self._limit = 0
        self._level = -math.inf
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stream = None

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cancel()

    def start(self) -> Recorder:
        self.started_at = time.perf_counter()
        sd = _sounddevice()  # the first recording of a process pays for the import
        with captured_stderr():
            sd._terminate()  # PortAudio lists devices when it starts: a microphone plugged in since is seen
            sd._initialize()
            try:
                device = sd.query_devices(kind="input")
            except (sd.PortAudioError, ValueError):
                raise SourceError(
                    "no microphone: there is no default input device; plug one in, and check that "
                    "the sound server (PulseAudio or PipeWire) is running and lets you record"
                ) from None
            self.device = str(device["name"])
            try:
                sd.check_input_settings(samplerate=self.rate, channels=1, dtype="float32")
            except sd.PortAudioError:  # a raw card that cannot record at 16 kHz: its own rate, resampled later
                self.rate = int(device["default_samplerate"])
            self._limit = int(round((self.seconds or config.DEFAULT_MIC_MAX_SECONDS) * self.rate))
            try:
                self._stream = sd.InputStream(
                    samplerate=self.rate,
                    channels=1,
                    dtype="float32",
                    blocksize=max(1, int(self.rate * config.DEFAULT_MIC_BLOCK_SECONDS)),
                    callback=self._arrived,
                )
                self._stream.start()
            except sd.PortAudioError as e:
                self._close()
                raise SourceError(
                    f"cannot record from {self.device} ({_reason(e)}): check that no other program "
                    "holds it and that you may use it (on macOS: System Settings > Privacy)"
                ) from None
        return self

    def _arrived(self, data: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio's thread: keep the block, measure its level."""
        if self.first_sample_at is None:
            self.first_sample_at = time.perf_counter()
        with self._lock:
            block = data[: max(0, self._limit - self._frames), 0].copy()
            if len(block):
                self._blocks.append(block)
                self._frames += len(block)
                rms = float(np.sqrt(np.mean(np.square(block))))
                self._level = 20 * math.log10(rms) if rms > 0 else -math.inf
            if self._frames >= self._limit:
                self._done.set()

    @property
    def elapsed(self) -> float:
        """Seconds recorded so far."""
        return self._frames / self.rate if self.rate else 0.0

    @property
    def done(self) -> bool:
        """The length (or the longest recording kept) has arrived."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def meter(self) -> str:
        """'0:03.2 ▮▮▮▮▯▯▯▯▯▯ -23 dB': the elapsed time and the last block's level."""
        level = self._level
        filled = 0 if level == -math.inf else round(_METER_WIDTH * min(1.0, max(0.0, 1 - level / _LEVEL_FLOOR_DB)))
        shown = "  -∞ dB" if level == -math.inf else f"{level:4.0f} dB"
        minutes, seconds = divmod(self.elapsed, 60)
        length = f" of {self.seconds:g} s" if self.seconds else ""
        full = " (the longest kept: Enter attaches it)" if self.done and not self.seconds else ""
        return f"{int(minutes)}:{seconds:04.1f}{length} {'▮' * filled}{'▯' * (_METER_WIDTH - filled)} {shown}{full}"

    def stop(self) -> Recording:
        """End the recording; what arrived (none at all is an error: there is nothing to attach)."""
        self._close()
        with self._lock:
            if not self._blocks:
                raise SourceError(
                    f"nothing was recorded: {self.device or 'the microphone'} sent no sound before "
                    "the recording ended; record again and speak before pressing Enter"
                )
            return Recording(np.concatenate(self._blocks), self.rate)

    def cancel(self) -> None:
        self._close()

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with captured_stderr():
                stream.abort()  # not stop(): what is still buffered is not waited for
                stream.close()


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0].rstrip(".") if str(error) else type(error).__name__


# -- one recording, as a part's URL asks ------------------------------------------------


def record(
    where: Location,
    stdin: IO[str] | None = None,
    stderr: IO[str] | None = None,
    terminal: bool = False,
) -> Recording:
    """What `mic:` or `mic:SECONDS` names, recorded now. Without a length it records until Enter
    (or Ctrl-D) on `stdin`, which must be a terminal; `stderr`, when given, shows the meter."""
    seconds = seconds_of(where)
    if seconds is None and not (terminal and stdin is not None):
        raise SourceError(
            f"{where.text} records until Enter, which needs a terminal: give a length as mic:SECONDS, e.g. mic:10"
        )
    with Recorder(seconds) as recorder:
        with _showing(recorder, stderr):
            if seconds is None:
                stdin.readline()  # Enter; '' at Ctrl-D
            else:
                recorder.wait()
        recording = recorder.stop()
    if recording.silent:
        log.warning(recording.silence_warning())
    return recording


class _showing:
    """The meter on one stderr line, redrawn ten times a second, until the block ends."""

    def __init__(self, recorder: Recorder, stream: IO[str] | None):
        self.recorder, self.stream = recorder, stream
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._draw, daemon=True)

    def __enter__(self) -> _showing:
        if self.stream is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.stream is not None:
            self.stopped.set()
            self.thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _draw(self) -> None:
        how = "Ctrl-C cancels" if self.recorder.seconds else "Enter stops · Ctrl-C cancels"
        while not self.stopped.wait(0.1):
            self.stream.write(f"\r\x1b[K● recording {self.recorder.meter()}  {how}")
            self.stream.flush()
