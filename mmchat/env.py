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
from collections.abc import Iterator
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

    def __init__(self, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 stdin_isatty: bool | None = None, stdout_isatty: bool | None = None,
                 stderr_isatty: bool | None = None, environ: dict[str, str] | None = None,
                 engine: Engine | None = None):
        self._streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        self._ttys = {"stdin": stdin_isatty, "stdout": stdout_isatty, "stderr": stderr_isatty}
        self._environ = environ
        self.engine = engine  # tests: answer with this engine instead of loading a model

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
