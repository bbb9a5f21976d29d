"""A real sound server for the microphone tests: PulseAudio in user mode, with its own runtime
directory and socket, whose default source is a pipe that the test feeds with a known sound.

Nothing is faked: mmchat records with sounddevice -> PortAudio -> ALSA's default device, which
ALSA's pulse plugin turns into this server's default source when a server is running, as on a
desktop with PulseAudio or PipeWire. Facts used, as published:
- module-pipe-source takes `file=` (a FIFO it creates), `format=`, `rate=`, `channels=` and
  `source_name=`; module-native-protocol-unix takes `socket=` and `auth-anonymous=`
  (PulseAudio's "Modules" documentation); a `-F` script holds `load-module` and
  `set-default-source` lines (pulse-cli-syntax(5)); `-n` skips the default script.
- /etc/alsa/conf.d/99-pulse.conf (Debian's pulseaudio package) loads pulse-alsa.conf, which makes
  ALSA's `default` the pulse plugin, "if running" (conf_pulse_hook_load_if_running); the plugin
  is libasound_module_pcm_pulse.so from libasound2-plugins. Clients find the server by PULSE_SERVER.

Where the system parts are missing the tests skip with one line naming the packages.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import stop

SOUND_PACKAGES = (
    "pulseaudio libportaudio2 libasound2-plugins (apt-get install -y pulseaudio libportaudio2 libasound2-plugins)"
)
RATE = 16000  # what the pipe source delivers: s16le mono
_CHUNK = RATE // 50  # 20 ms a write, paced in real time


def sound_missing() -> list[str]:
    """The packages the microphone tests need that are not installed."""
    return [
        name
        for name, there in (
            ("pulseaudio", shutil.which("pulseaudio")),
            ("libportaudio2", ctypes.util.find_library("portaudio")),
            ("libasound2-plugins", _alsa_pulse_plugin()),
        )
        if not there
    ]


def need_sound() -> None:
    missing = sound_missing()
    if missing:
        pytest.skip(f"no {', '.join(missing)}: install {SOUND_PACKAGES} to run the microphone tests")


def _alsa_pulse_plugin() -> bool:
    return any(
        Path(d).glob("alsa-lib/libasound_module_pcm_pulse.so")
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/lib64")
    )


class SoundServer:
    """A running PulseAudio whose default microphone plays `sound` (float samples at RATE, looped)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.socket = folder / "native"
        self.fifo = folder / "mic.fifo"
        self.sound = np.zeros(_CHUNK, np.float32)  # silence until a test plays something
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self.process: subprocess.Popen | None = None

    @property
    def environ(self) -> dict[str, str]:
        """What a client needs to find this server (and nothing of the user's own)."""
        return {"PULSE_SERVER": f"unix:{self.socket}"}

    def play(self, samples: np.ndarray) -> None:
        """From the next 20 ms on, the microphone hears `samples`, over and over."""
        self.sound = np.asarray(samples, np.float32)

    def start(self) -> None:
        script = self.folder / "mic.pa"
        script.write_text(
            "load-module module-null-sink\n"
            f"load-module module-pipe-source file={self.fifo} format=s16le rate={RATE} channels=1 source_name=mic\n"
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
            "set-default-source mic\n"
        )
        runtime = self.folder / "runtime"
        runtime.mkdir(mode=0o700)
        env = {
            **os.environ,
            "HOME": str(self.folder),
            "XDG_RUNTIME_DIR": str(runtime),
            "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
            "PULSE_STATE_PATH": str(self.folder / "state"),
        }
        env.pop("PULSE_SERVER", None)
        self.process = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(script),
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--log-target=stderr",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "pulseaudio.log", "wb"),
        )
        end = time.monotonic() + 20
        while not (self.socket.exists() and self.fifo.exists()):
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"pulseaudio did not start: {(self.folder / 'pulseaudio.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        """Write the sound into the pipe at its own pace, as a microphone delivers it."""
        fd = os.open(self.fifo, os.O_WRONLY)
        try:
            start, written, at = time.monotonic(), 0, 0
            while not self._stop.is_set():
                sound = self.sound
                idx = (at + np.arange(_CHUNK)) % len(sound)
                at = (at + _CHUNK) % len(sound)
                pcm = np.clip(np.round(sound[idx] * 32767), -32768, 32767).astype("<i2").tobytes()
                try:
                    os.write(fd, pcm)
                except OSError:  # the server went away
                    return
                written += _CHUNK
                ahead = (
                    start + written / RATE - time.monotonic() - 0.2
                )  # keep 200 ms queued: a busy machine does not starve it
                if ahead > 0:
                    time.sleep(ahead)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        if self.process is not None:
            stop(self.process)
        if self._feeder is not None:
            self._feeder.join(timeout=5)


@contextlib.contextmanager
def sound_server() -> Iterator[SoundServer]:
    """A fresh PulseAudio with a pipe microphone, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="mmchat-pulse-") as folder:
        server = SoundServer(Path(folder))
        try:
            server.start()
            yield server
        finally:
            server.stop()


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    """A sine at RATE that loops without a click when `frequency * seconds` is whole."""
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))
