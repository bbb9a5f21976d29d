"""The terminal edge: everything the CLI takes from the process, in one object.

Streams, whether each is a terminal, NO_COLOR, MMCHAT_DEBUG, how notices and errors are
printed, and (for tests) the engine to answer with. Commands ask `current()` for it and never
look at sys.stdout, os.environ or isatty themselves; tests install their own with `use()`,
as httpie's MockEnvironment does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from .errors import one_line

if TYPE_CHECKING:
    from rich.console import Console

    from .engine.base import Engine


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class Environment:
    """The process as the CLI sees it. Unset streams mean sys.stdin/stdout/stderr at the time of use."""

    def __init__(
        self,
        *,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        stdin_isatty: bool | None = None,
        stdout_isatty: bool | None = None,
        stderr_isatty: bool | None = None,
        environ: dict[str, str] | None = None,
        engine: Engine | None = None,
        terminal: Terminal | None = None,
    ):
        self._streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        self._ttys = {"stdin": stdin_isatty, "stdout": stdout_isatty, "stderr": stderr_isatty}
        self._environ = environ
        self.engine = engine  # tests: answer with this engine instead of loading a model
        self._terminal = terminal  # tests: a terminal with scripted replies

    # -- streams ---------------------------------------------------------------------

    @property
    def stdin(self) -> IO[str]:
        return self._streams["stdin"] or sys.stdin

    @property
    def stdout(self) -> IO[str]:
        return self._streams["stdout"] or sys.stdout

    @property
    def stderr(self) -> IO[str]:
        return self._streams["stderr"] or sys.stderr

    def isatty(self, name: str) -> bool:
        given = self._ttys[name]
        return _isatty(getattr(self, name)) if given is None else given

    @property
    def stdin_bytes(self) -> Any:
        """Standard input as bytes, for a media part read from '-'."""
        return getattr(self.stdin, "buffer", self.stdin)

    def read_piped_text(self) -> str:
        """Text piped into the command ('' when stdin is a terminal or closed)."""
        try:
            if self.stdin is None or self.isatty("stdin"):
                return ""
            return self.stdin.read()
        except (OSError, ValueError):
            return ""

    # -- settings --------------------------------------------------------------------

    @property
    def environ(self) -> dict[str, str]:
        return os.environ if self._environ is None else self._environ  # type: ignore[return-value]

    @property
    def debug(self) -> bool:
        """MMCHAT_DEBUG=1: tracebacks instead of one-line errors, and native libraries' chatter let through."""
        return self.environ.get("MMCHAT_DEBUG") == "1"

    def colour(self, no_color: bool = False) -> bool:
        """--no-color and NO_COLOR (any value, as no-color.org says) turn colour and Markdown off."""
        return not no_color and "NO_COLOR" not in self.environ

    def markdown(self, no_color: bool = False) -> bool:
        """Whether answers on stdout are rendered as Markdown (render.shows_markdown decides)."""
        from .render import shows_markdown

        return shows_markdown(self.stdout_console(no_color))

    def stdout_console(self, no_color: bool = False) -> Console:
        from .render import console

        return console(self.stdout, colour=self.colour(no_color), terminal=self.isatty("stdout"))

    def stderr_console(self, no_color: bool = False) -> Console:
        from .render import console

        return console(self.stderr, colour=self.colour(no_color), terminal=self.isatty("stderr"), soft_wrap=True)

    def terminal(self, name: str) -> Terminal | None:
        """The terminal stream `name` writes to, to size pictures and ask it what it draws; None
        when that stream is not a terminal (a pipe never gets a picture)."""
        if not self.isatty(name):
            return None
        if self._terminal is not None:
            return self._terminal
        try:
            fd = getattr(self, name).fileno()
        except (AttributeError, OSError, ValueError):
            return None
        return Terminal(fd, self.environ, stdin=self.stdin if self.isatty("stdin") else None)

    # -- what the user is told -------------------------------------------------------

    def notice(self, message: str) -> None:
        print(f"mmchat: {message}", file=self.stderr, flush=True)

    def warn(self, message: str) -> None:
        self.notice(f"warning: {message}")

    def error(self, error: BaseException | str) -> None:
        print(one_line(error), file=self.stderr, flush=True)


_current: Environment | None = None


def current() -> Environment:
    return _current or Environment()


@contextlib.contextmanager
def use(env: Environment) -> Iterator[Environment]:
    """Run commands in `env` (tests: streams, terminals and an engine of their choosing)."""
    global _current
    saved, _current = _current, env
    try:
        yield env
    finally:
        _current = saved


class Terminal:
    """A terminal as a picture needs it: its size, what the environment says of it, and a way to
    ask it questions (its replies come on its input: stdin, or /dev/tty when stdin is a pipe)."""

    def __init__(self, fd: int, environ: Any = None, *, stdin: Any = None):
        self.fd = fd
        self.environ = os.environ if environ is None else environ
        self._stdin = stdin
        self.asked = False  # a query was written: its answer comes on the input, maybe late
        self.typed = b""  # keys the user typed while a query waited for its answer: the prompt's, in order
        self.late_replies: Any = None  # preview.detect.LateReplies when an answer may still come

    @property
    def tmux(self) -> bool:
        return bool(self.environ.get("TMUX"))

    @property
    def truecolor(self) -> bool:
        """COLORTERM=truecolor|24bit, as terminals that draw 24-bit colour set it."""
        return self.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit")

    @property
    def dumb(self) -> bool:
        return self.environ.get("TERM", "") in ("dumb", "")

    def size(self) -> tuple[int, int, int, int]:
        """(columns, rows, width, height in pixels; 0 when unknown) from the window-size ioctl."""
        try:
            import fcntl
            import struct
            import termios

            rows, cols, width, height = struct.unpack("HHHH", fcntl.ioctl(self.fd, termios.TIOCGWINSZ, b"\0" * 8))
        except (ImportError, OSError):
            import shutil

            cols, rows = shutil.get_terminal_size()
            width = height = 0
        return cols or 80, rows or 24, width, height

    def cell_pixels(self) -> tuple[int, int] | None:
        cols, rows, width, height = self.size()
        return (width // cols, height // rows) if width and height and width >= cols and height >= rows else None

    def query(self, data: bytes, done: Callable[[bytes], bool], timeout: float) -> bytes:
        """Write `data`, then read the terminal's reply until `done(reply)` or `timeout` seconds.
        The input is read as a prompt reads it (no echo, no line editing, Enter as CR), so keys typed
        meanwhile come back with the reply, as they were typed; b"" where there is no input to read."""
        try:
            import termios
        except ImportError:  # Windows: no such questions asked
            return b""
        fd, close = self._input()
        if fd is None:
            return b""
        try:
            saved = termios.tcgetattr(fd)
        except termios.error:
            if close:
                os.close(fd)
            return b""
        try:
            raw = list(saved)
            raw[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON)  # as prompt_toolkit's raw mode
            raw[3] &= ~(termios.ICANON | termios.ECHO)
            raw[6] = list(raw[6])
            raw[6][termios.VMIN], raw[6][termios.VTIME] = 0, 0
            termios.tcsetattr(fd, termios.TCSANOW, raw)
            os.write(self.fd, data)
            self.asked = True
            return _read_reply(fd, done, timeout)
        except OSError:
            return b""
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
            if close:
                os.close(fd)

    def _input(self) -> tuple[int | None, bool]:
        """Where the terminal's replies arrive, and whether it was opened here."""
        if self._stdin is not None:
            try:
                return self._stdin.fileno(), False
            except (AttributeError, OSError, ValueError):
                pass
        try:
            return os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY), True
        except OSError:
            return None, False

    def tmux_passthrough(self) -> tuple[bool, str]:
        """Inside tmux: whether it passes sequences through to the terminal outside, and that terminal's name."""
        import subprocess

        try:
            done = subprocess.run(
                ["tmux", "display", "-p", "#{allow-passthrough}|#{client_termtype}"],
                capture_output=True,
                text=True,
                timeout=2,
                env=dict(self.environ),
            )
        except (OSError, subprocess.TimeoutExpired):
            return False, ""
        allowed, _, outer = done.stdout.strip().partition("|")
        return done.returncode == 0 and allowed in ("1", "on", "all"), outer


def _read_reply(fd: int, done: Callable[[bytes], bool], timeout: float) -> bytes:
    import select
    import time

    reply = b""
    end = time.monotonic() + timeout
    while not done(reply):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        reply += chunk
    return reply
