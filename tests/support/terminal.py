"""The one pty driver: `mmchat` on a pseudo-terminal of its own, the test playing the terminal.

Whatever mmchat does only at a terminal (the REPL's prompt and toolbar, type-ahead, the recording
meter, rendered markdown) is seen through it, so every such test gets the same window size, TERM
and clean-up.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.helpers import MMCHAT, mmchat_env

ROOT = Path(__file__).resolve().parents[2]


class Pty:
    """`mmchat COMMAND ARGS` on a 30x160 pty; `home` (when given) is its MMCHAT_HOME, `env` is added
    last (NO_COLOR, COLUMNS), `pipe_stdout` keeps stdout off the terminal so the answer alone can be
    read from `proc.stdout`, and `answers_cpr` lets prompt_toolkit ask for the cursor position (the
    test answers, as a real terminal does)."""

    def __init__(
        self,
        args: list[str],
        home: Path | None = None,
        *,
        command: str | None = "chat",
        env: Mapping[str, str] | None = None,
        pipe_stdout: bool = False,
        answers_cpr: bool = False,
    ):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
        extra = {"TERM": "xterm-256color"}
        if not answers_cpr:  # else prompt_toolkit asks where the cursor is, and the test answers
            extra["PROMPT_TOOLKIT_NO_CPR"] = "1"
        if home is not None:
            extra["MMCHAT_HOME"] = str(home)
        full = mmchat_env(extra)
        full.pop("NO_COLOR", None)
        full.update(env or {})
        self.proc = subprocess.Popen(
            [*MMCHAT, *([command] if command else []), *args],
            stdin=slave,
            stdout=subprocess.PIPE if pipe_stdout else slave,
            stderr=slave,
            env=full,
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = bytearray()

    def _read(self) -> bool:
        """One read of what the program wrote; False once it has closed the terminal."""
        if select.select([self.master], [], [], 0.1)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            self.seen.extend(chunk)
        return True

    def until(self, found: Callable[[bytes], bool], timeout: float = 60) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not found(bytes(self.seen)) and self._read():
            pass
        return found(bytes(self.seen))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 60) -> int:
        """Everything the program writes until it ends (or `timeout`), then its exit code."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self._read():
            pass
        try:
            return self.proc.wait(timeout=max(end - time.monotonic(), 1))
        finally:
            self.kill()

    def close(self) -> int | None:
        """`/exit` to the REPL and its exit code; None (and a kill) when it does not leave."""
        try:
            self.type(b"/exit\r")
            return self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        finally:
            self.kill()

    def kill(self) -> None:
        """Ends the program if it still runs and closes the terminal (once)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
