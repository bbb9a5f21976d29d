"""The REPL's input history on disk, in prompt_toolkit's FileHistory format, never half an entry.

prompt_toolkit appends an entry in several writes and reads back whatever is there, so a
REPL killed mid-write, a full disk or two REPLs at once leave a cut or interleaved entry that
the next run recalls as if it were typed. Here each entry is one O_APPEND write whose header
line carries its length (`# 2026-12-01 10:00:00 len=12`); an entry that does not add up is
skipped when read. A full or read-only disk turns saving off with one notice, never the REPL.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from prompt_toolkit.history import FileHistory

from ..errors import disk_full

_LENGTH = re.compile(rb"^#.* len=(\d+)\n$")


class SafeFileHistory(FileHistory):
    def __init__(self, path: Path, notice: Callable[[str], None]):
        super().__init__(str(path))
        self.path = path
        self._notice = notice
        self._saving = True

    def load_history_strings(self) -> Iterable[str]:
        try:
            data = self.path.read_bytes()
        except OSError:
            return []
        return reversed(parse(data))

    def store_string(self, string: str) -> None:
        if not self._saving:
            return
        try:
            append_entry(self.path, string)
        except OSError as e:
            self._saving = False
            full = disk_full(e, self.path, "this session's lines are kept in memory only")
            self._notice(
                str(full) if full else f"history is not saved any more: cannot write {self.path} ({e.strerror or e})"
            )


def entry_bytes(string: str) -> bytes:
    body = "".join(f"+{line}\n" for line in string.split("\n")).encode("utf-8", errors="replace")
    return f"\n# {datetime.datetime.now()} len={len(body)}\n".encode() + body


def append_entry(path: Path, string: str) -> None:
    """One write at the end of the file; a short write (a full disk) is cut back off."""
    data = entry_bytes(string)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, os.strerror(28))  # ENOSPC: the rest did not fit
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def parse(data: bytes) -> list[str]:
    """The whole entries in `data`, oldest first; an entry whose length is stated and wrong is left out."""
    strings: list[str] = []
    body: list[bytes] = []
    want: int | None = None

    def add() -> None:
        if body and body[-1].endswith(b"\n") and (want is None or want == sum(map(len, body))):
            strings.append(b"".join(line[1:] for line in body).decode("utf-8", errors="replace")[:-1])

    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # what follows the last newline: empty, or a line cut short
    for line in lines:
        if line.startswith(b"+"):
            body.append(line)
            continue
        add()
        body = []
        m = _LENGTH.match(line)
        want = int(m.group(1)) if m else None
    add()
    return strings
