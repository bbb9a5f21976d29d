"""mic: and /rec against a real PulseAudio whose default microphone plays a known sound
(tests/support/soundserver.py): what is recorded, where it is kept, who may record, and every refusal
in one line."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mmchat import MediaPolicy
from mmchat.errors import MediaRefused, SourceError
from mmchat.messages import audio_part, user_message
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.helpers import MMCHAT, mmchat_env, model_args, run_mmchat
from tests.support.soundserver import RATE, dominant_frequency, need_sound, sound_server, tone
from tests.support.terminal import Pty

pytestmark = pytest.mark.model  # a real PulseAudio server is started for these tests

NOISE = np.random.default_rng(19).uniform(-0.3, 0.3, RATE).astype(np.float32)  # one second, looped
A4 = tone(440.0)


@pytest.fixture
def mic(monkeypatch):
    need_sound()
    with sound_server() as server:
        for name, value in server.environ.items():
            monkeypatch.setenv(name, value)
        server.play(A4)
        yield server


def _kept() -> list[Path]:
    return sorted((Path(os.environ["MMCHAT_HOME"]) / "captures").glob("mic-*.wav"))


def _heard(path: Path) -> tuple[float, float]:
    """A kept recording's length (s) and loudest frequency (Hz)."""
    samples, rate = soundfile.read(path, dtype="float32")
    return len(samples) / rate, dominant_frequency(samples, rate)


# -- in this process --------------------------------------------------------------------


def test_the_recording_is_what_the_microphone_heard(mic):
    from mmchat.inputs.microphone import Recorder

    mic.play(NOISE)
    time.sleep(0.3)  # the tone queued before is through
    with Recorder(1.5) as recorder:
        recorder.wait()
        recording = recorder.stop()
    assert recording.rate == RATE and recording.seconds == 1.5
    one = recording.samples[-RATE:]  # a whole period of the looped noise, at some shift
    shifted = np.fft.irfft(np.fft.rfft(one) * np.conj(np.fft.rfft(NOISE)), RATE)
    assert shifted.max() / (np.linalg.norm(one) * np.linalg.norm(NOISE)) > 0.99  # the same samples, shifted
    assert not recording.silent


def test_a_runner_records_mic_seconds_when_devices_are_allowed(mic):
    answer = Runner(engine=FakeEngine(), devices=True).chat([user_message("what?", [audio_part("mic:1")])]).content
    assert "[audio 1.00s " in answer


@pytest.mark.parametrize(
    "runner",
    [lambda: Runner(engine=FakeEngine()), lambda: Runner(engine=FakeEngine(), policy=MediaPolicy(local_files=True))],
)
def test_a_runner_refuses_the_microphone_unless_allowed(runner):
    with pytest.raises(MediaRefused, match=r"microphone.*devices=True"):
        runner().chat([user_message("what?", [audio_part("mic:1")])])


@pytest.mark.parametrize(
    "url, words", [("mic:", "give a length as mic:SECONDS"), ("mic:ten", "in seconds"), ("mic:9999", "from 0 to 600")]
)
def test_a_runner_needs_a_length_it_can_record(url, words):
    with pytest.raises(SourceError, match=words):
        Runner(engine=FakeEngine(), devices=True).chat([user_message("what?", [audio_part(url)])])


# -- as a user runs it, on the generated audio model --------------------------------------


def _hearing(models) -> list[str]:
    return model_args(models, "mmproj-audio")


def _seeing(models) -> list[str]:
    return model_args(models)


def test_ask_records_mic_seconds_keeps_the_wav_and_the_log_names_it(models, mic):
    out = run_mmchat("ask", *_hearing(models), "--audio", "mic:2", "Transcribe this.")
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.strip() and b"warning" not in out.stderr
    [kept] = _kept()
    seconds, pitch = _heard(kept)
    assert seconds == 2.0 and abs(pitch - 440) < 2
    assert str(kept) in run_mmchat("logs", "--json").stdout.decode()
    again = run_mmchat("ask", *_hearing(models), "--continue", "And then?")  # the kept file, checked by its sha256
    assert again.returncode == 0, again.stderr.decode()


def test_ask_at_a_terminal_records_until_enter(models, mic):
    term = Pty(["ask", *_hearing(models), "--audio", "mic:", "Transcribe this."], command=None, pipe_stdout=True)
    fd = term.master
    try:
        assert _read_until(fd, b"Enter stops", 60)  # the meter is up: recording
        time.sleep(1.2)
        term.type(b"\r")
        stdout, _ = term.proc.communicate(timeout=60)
    finally:
        term.kill()
        _TERMINALS.pop(fd, None)
    assert term.proc.returncode == 0 and stdout.strip()
    [kept] = _kept()
    seconds, pitch = _heard(kept)
    assert 1.0 <= seconds < 30 and abs(pitch - 440) < 2


_TERMINALS: dict[int, tuple] = {}  # pty fd -> (pyte screen, its stream)
_SCREEN: list[str] = []  # what the terminal showed when the last _read_until ended, for a failing assertion


def _read_until(fd: int, wanted: bytes | re.Pattern, timeout: float) -> bool:
    """Read the terminal until `wanted` shows on its screen, as a terminal would draw it (pyte, a
    VT100 emulator: prompt_toolkit redraws only the cells that change); cursor-position requests
    (ESC[6n) are answered as a terminal does (row 1), so prompt_toolkit draws its toolbar."""
    import pyte

    if fd not in _TERMINALS:  # one screen per terminal, kept across calls as the terminal keeps it
        screen = pyte.Screen(160, 30)
        _TERMINALS[fd] = (screen, pyte.ByteStream(screen))
    screen, stream = _TERMINALS[fd]
    pattern = wanted if isinstance(wanted, re.Pattern) else re.compile(re.escape(wanted))
    end = time.monotonic() + timeout

    def shown() -> str:
        return "\n".join(line.rstrip() for line in screen.display)

    while time.monotonic() < end and not pattern.search(shown().encode()):
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            stream.feed(chunk)
            for _ in range(chunk.count(b"\x1b[6n")):
                os.write(fd, b"\x1b[1;1R")
    _SCREEN[:] = [shown()]
    return bool(pattern.search(shown().encode()))


def test_ask_refuses_mic_without_seconds_when_no_one_can_press_enter(models, mic):
    out = run_mmchat("ask", *_hearing(models), "--audio", "mic:", "Transcribe this.")
    stderr = out.stderr.decode().strip()
    assert out.returncode == 2 and "mic:SECONDS" in stderr and "\n" not in stderr and not _kept()


def test_a_model_that_cannot_hear_refuses_before_recording(models, mic):
    out = run_mmchat("ask", *_seeing(models), "--audio", "mic:2", "Transcribe this.")
    stderr = out.stderr.decode().strip()
    assert out.returncode == 2 and "not audio" in stderr and "\n" not in stderr and not _kept()
    chat = run_mmchat("chat", *_seeing(models), stdin=b"/rec\n/attachments\n")
    assert chat.returncode == 0 and "not audio" in chat.stderr.decode() and not _kept()
    assert "no attachments pending" in chat.stderr.decode()


def test_silence_is_recorded_with_a_warning(models, mic):
    mic.play(np.zeros(RATE, np.float32))
    time.sleep(0.3)
    out = run_mmchat("ask", *_hearing(models), "--audio", "mic:1", "Transcribe this.")
    assert out.returncode == 0, out.stderr.decode()
    assert "warning: the recording is silent" in out.stderr.decode() and len(_kept()) == 1


def test_without_a_sound_server_it_is_one_line(models):
    need_sound()
    out = run_mmchat(
        "ask",
        *_hearing(models),
        "--audio",
        "mic:1",
        "Transcribe this.",
        env={"PULSE_SERVER": "unix:/nonexistent/native", "ALSA_CARD": "none"},
    )
    stderr = out.stderr.decode().strip()
    assert out.returncode == 2 and stderr.startswith("mmchat: error: no microphone") and "\n" not in stderr


# -- the REPL's /rec ------------------------------------------------------------------------


class _Chat:
    """`mmchat chat` with a piped stdin, typed into line by line; stderr read as it comes."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(
            [*MMCHAT, "chat", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=mmchat_env(),
        )
        self.said = b""

    def type(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, words: str, timeout: float = 60) -> None:
        fd, end = self.proc.stderr.fileno(), time.monotonic() + timeout
        while words.encode() not in self.said and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                self.said += os.read(fd, 65536)
        assert words.encode() in self.said, self.said.decode()

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out.decode(), (self.said + err).decode()


def test_rec_records_until_enter_then_attaches_and_the_question_hears_it(models, mic):
    chat = _Chat(_hearing(models))
    try:
        chat.wait_for("takes audio")
        chat.type("/rec")
        chat.wait_for("recording from")
        time.sleep(1.2)
        chat.type("")  # Enter
        chat.wait_for("attached audio")
        chat.type("What did you hear?")
    finally:
        code, out, err = chat.finish()
    assert code == 0 and out.strip(), err
    [kept] = _kept()
    seconds, pitch = _heard(kept)
    assert seconds >= 1.0 and abs(pitch - 440) < 2


def test_ctrl_c_cancels_a_recording_and_the_chat_goes_on(models, mic):
    chat = _Chat(_hearing(models))
    try:
        chat.wait_for("takes audio")
        chat.type("/rec")
        chat.wait_for("recording from")
        time.sleep(0.5)
        chat.proc.send_signal(signal.SIGINT)
        chat.wait_for("recording cancelled")
        chat.type("/attachments")
        chat.type("Hello?")
    finally:
        code, out, err = chat.finish()
    assert code == 0 and "no attachments pending" in err and out.strip() and not _kept()


def test_rec_at_a_real_terminal_shows_the_time_and_level_in_the_toolbar(models, mic, tmp_path):
    term = Pty(_hearing(models), answers_cpr=True)
    fd = term.master
    try:
        assert _read_until(fd, b"Ctrl-D leaves", 60)
        time.sleep(0.5)  # the prompt is up
        term.type(b"/rec\r")
        meter = re.compile(r"recording 0:0\d\.\d (?:▮|▯){10} +-9 dB".encode())  # the tone's level (-9 dB RMS)
        assert _read_until(fd, meter, 30), _SCREEN[0]
        time.sleep(1.2)
        term.type(b"\r")
        assert _read_until(fd, b"attached audio", 30)
        assert term.close() == 0
    finally:
        term.kill()
        _TERMINALS.pop(fd, None)
    [kept] = _kept()
    seconds, pitch = _heard(kept)
    assert seconds >= 1.0 and abs(pitch - 440) < 2
