"""Native libraries that print to file descriptor 2 themselves (libmpg123, llama.cpp's GBNF
parser) bypass Python's sys.stderr; this keeps what they say for our own one-line messages.
The CLI lets it through under MMCHAT_DEBUG=1 (`let_through`); the library never reads the environment."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

_through = False


def let_through(on: bool) -> None:
    """Let native libraries' own stderr output through (the CLI's MMCHAT_DEBUG=1), or keep it again."""
    global _through
    _through = on


@contextlib.contextmanager
def captured_stderr() -> Iterator[Callable[[], list[str]]]:
    """Redirect fd 2 meanwhile; the yielded function returns what was written, as lines, afterwards."""
    lines: list[str] = []
    if _through:
        yield lambda: lines
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())
