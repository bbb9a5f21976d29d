"""Files written whole or not at all: a crash, a full disk or Ctrl-C never leaves half a file
where the next run will read it (saved conversations, `batch --resume`'s rewritten results)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import disk_full


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file beside `path`, fsync it, then rename it over `path` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if full := disk_full(e, path, "free some space and try again (the old file is unchanged)"):
            raise full from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the umask's, like open() would."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
