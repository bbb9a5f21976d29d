"""Output modes, decided in one place: TTY Markdown, plain text for pipes, or JSON.

stdout carries the answer only. Notices, progress and errors go to a stderr console, which
draws bars and colour only when stderr is a terminal and NO_COLOR is not set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from rich.console import Console

MARKDOWN_REFRESH_PER_SECOND = 10
PROGRESS_MIN_BYTES = 1 << 20  # downloads smaller than this never show a bar


def colour_allowed(no_color: bool = False) -> bool:
    return not no_color and "NO_COLOR" not in os.environ


def stderr_console(no_color: bool = False) -> Console:
    return Console(stderr=True, no_color=not colour_allowed(no_color), highlight=False, soft_wrap=True)


def stdout_console(no_color: bool = False, file: IO[str] | None = None) -> Console:
    file = file or sys.stdout
    width = None if _isatty(file) else 160  # a pipe has no width: don't fold tables at 80
    return Console(file=file, no_color=not colour_allowed(no_color), highlight=False, width=width)


class Output:
    """Where the answer goes and how it looks."""

    def __init__(self, *, json_mode: bool = False, markdown: bool | None = None, no_color: bool = False, file: IO[str] | None = None):
        self.file = file or sys.stdout
        self.json_mode = json_mode
        tty = _isatty(self.file)
        # Markdown only on a terminal; NO_COLOR keeps the text plain (no ANSI at all)
        self.markdown = (tty and colour_allowed(no_color)) if markdown is None else markdown
        self.no_color = no_color

    def stream(self, deltas: Iterable[str]) -> str:
        """Show deltas as they come; returns the whole text. Stops cleanly on Ctrl-C."""
        if self.json_mode:
            return "".join(deltas)
        if self.markdown:
            return self._stream_markdown(deltas)
        parts = []
        try:
            for delta in deltas:
                parts.append(delta)
                self.file.write(delta)
                self.file.flush()
        finally:
            text = "".join(parts)
            if text and not text.endswith("\n"):
                self.file.write("\n")
            self.file.flush()
        return text

    def _stream_markdown(self, deltas: Iterable[str]) -> str:
        from rich.live import Live
        from rich.markdown import Markdown

        console = stdout_console(self.no_color, self.file)
        parts: list[str] = []
        with Live(Markdown(""), console=console, refresh_per_second=MARKDOWN_REFRESH_PER_SECOND,
                  vertical_overflow="visible", transient=False) as live:
            last = 0.0
            try:
                for delta in deltas:
                    parts.append(delta)
                    now = time.monotonic()
                    if now - last >= 1 / MARKDOWN_REFRESH_PER_SECOND:
                        live.update(Markdown("".join(parts)))
                        last = now
            finally:
                live.update(Markdown("".join(parts)), refresh=True)
        return "".join(parts)

    def json(self, data: dict[str, Any]) -> None:
        self.file.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.file.flush()


def download_progress(console: Console, quiet: bool) -> Callable[[str], Callable[[int, int | None], None]] | None:
    """A factory of byte-progress callbacks drawing a bar on stderr (terminal only)."""
    if quiet or not console.is_terminal:
        return None

    def factory(label: str) -> Callable[[int, int | None], None]:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        state: dict[str, Any] = {}

        def update(done: int, total: int | None) -> None:
            if "bar" not in state:
                if total is not None and total < PROGRESS_MIN_BYTES:
                    state["bar"] = None
                    return
                bar = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                               console=console, transient=True)
                bar.start()
                state["bar"], state["task"] = bar, bar.add_task(label[-40:], total=total)
            bar = state["bar"]
            if bar is None:
                return
            bar.update(state["task"], completed=done)
            if total is not None and done >= total:
                bar.stop()
                state["bar"] = None

        return update

    return factory


def _isatty(f: IO[str]) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False
