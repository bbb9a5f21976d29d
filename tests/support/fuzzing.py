"""What the property-based tests share: how many examples, and a decoder process to crash.

CI runs a bounded number of examples (the "ci" profile, registered in conftest.py: about a
minute for all the fuzz tests together); MMCHAT_FUZZ_EXAMPLES=N runs N per test, randomly.

Decoders run in `Worker`, a child process fed one input at a time (python -m tests.support.fuzzing):
a segfault or an abort inside libsndfile, FFmpeg or Pillow ends the child, not pytest, and
the example that did it is reported with the signal. The child has an address-space limit,
so a decompression bomb shows as a MemoryError instead of taking the machine.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
from typing import Any

FUZZ_EXAMPLES = int(os.environ.get("MMCHAT_FUZZ_EXAMPLES", "0") or 0)
_MEMORY_LIMIT = 3 << 30


def examples(ci: int) -> int:
    """Examples for one test: `ci` in the suite, MMCHAT_FUZZ_EXAMPLES when set."""
    return FUZZ_EXAMPLES or ci


def _send(stream, obj: Any) -> None:
    payload = pickle.dumps(obj)
    stream.write(struct.pack("<I", len(payload)) + payload)
    stream.flush()


def _receive(stream) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError
    (n,) = struct.unpack("<I", head)
    return pickle.loads(stream.read(n))


class Worker:
    """A child process that runs `decode(kind, data)` and says what came out of it."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONFAULTHANDLER": "0"}
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.fuzzing"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )

    def run(self, kind: str, data: bytes) -> tuple[str, str]:
        """('ok', '') or ('mmchat', message) or ('escaped', traceback) or ('signal', name)."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        try:
            _send(self._proc.stdin, (kind, data))
            return _receive(self._proc.stdout)
        except (EOFError, BrokenPipeError):
            code = self._proc.wait()
            self._proc = None
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            return "signal", name

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)


# -- the child ------------------------------------------------------------------------------


def decode(kind: str, data: bytes) -> None:
    """Everything that reads untrusted media bytes, as the resolver calls it."""
    from mmchat.inputs.sniff import detect_kind
    from mmchat.media.audio import decode_audio
    from mmchat.media.image import decode_image
    from mmchat.media.probe import sound_seconds
    from mmchat.media.video import VideoOptions, decode_video

    if kind == "crash":  # the harness's own test: what a crash in native code looks like
        os.kill(os.getpid(), signal.SIGSEGV)
    detect_kind(data)
    if kind == "image":
        decode_image(data, label="fuzz.img", max_side=256)
    elif kind == "audio":
        sound_seconds(data)
        decode_audio(data, label="fuzz.snd", sample_rate=16000)
    else:
        sound_seconds(data)
        decode_video(data, label="fuzz.vid", options=VideoOptions(max_frames=4), audio_rate=16000)


def _serve() -> None:
    import traceback

    from mmchat.errors import MmchatError

    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing a decoder prints may reach the protocol
    while True:
        try:
            kind, data = _receive(stdin)
        except EOFError:
            return
        try:
            decode(kind, data)
            result = ("ok", "")
        except MmchatError as e:
            result = ("mmchat", str(e))
        except BaseException:  # noqa: BLE001 - exactly what the test is looking for
            result = ("escaped", traceback.format_exc())
        _send(stdout, result)


if __name__ == "__main__":
    _serve()
