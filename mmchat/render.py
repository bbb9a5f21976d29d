"""How an answer looks: live Markdown on a terminal, plain text for pipes, or JSON.

stdout carries the answer only. Progress bars go to a stderr console and are drawn only when
stderr is a terminal. Whether a stream is a terminal and whether colour is allowed is decided
once, in cli/env.py; this module is told.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

from .errors import MmchatError, one_line

REFRESH_S = 0.125  # the live Markdown view redraws at most this often


def console(file: IO[str], *, colour: bool, terminal: bool, soft_wrap: bool = False) -> Console:
    """A rich console on `file`; the caller (cli/env.py) has decided colour and terminal-ness.
    Without colour no style is written either (rich's no_color alone still writes dim and bold)."""
    width = None if terminal else 160  # a pipe has no width: don't fold tables at 80
    return Console(
        file=file,
        no_color=not colour,
        highlight=False,
        width=width,
        soft_wrap=soft_wrap,
        force_terminal=terminal,
        **({} if colour else {"color_system": None}),
    )


class Output:
    """Where the answer goes and how it looks."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        markdown: bool = False,
        file: IO[str] | None = None,
        markdown_console: Console | None = None,
    ):
        self.file = file or sys.stdout
        self.json_mode = json_mode
        self.markdown = markdown  # live Markdown: only on a terminal with colour (cli/env.py decides)
        self._console = markdown_console

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
        view = AnswerView(self._console or console(self.file, colour=True, terminal=False), markdown=True)
        try:
            for delta in deltas:
                view.add(delta)
        finally:
            view.close()
        return view.text

    def json(self, data: dict[str, Any]) -> None:
        self.file.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.file.flush()


class StderrProgress:
    """`progress(task, done, total)` for every long step (downloads, video decode, media encode).

    A task shows as a transient bar on stderr once it has run for SHOW_AFTER seconds, so quick
    steps never flash; it disappears when done >= total, before the answer streams. Nothing is
    drawn when stderr is not a terminal.
    """

    SHOW_AFTER = 1.0

    def __init__(self, console: Console):
        import threading

        self.console = console
        self._lock = threading.Lock()
        self._bar = None
        self._tasks: dict[str, Any] = {}  # task -> rich task id, or None until shown
        self._pending: dict[str, tuple[float, float | None]] = {}

    def __call__(self, task: str, done: float, total: float | None) -> None:
        import threading

        with self._lock:
            if task not in self._tasks:
                self._tasks[task] = None
                timer = threading.Timer(self.SHOW_AFTER, self._show, args=(task,))
                timer.daemon = True
                timer.start()
            self._pending[task] = (done, total)
            if self._tasks[task] is not None:
                self._bar.update(self._tasks[task], completed=done, total=total)
            if total is not None and done >= total:
                self._finish(task)

    def _show(self, task: str) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn, TimeRemainingColumn

        with self._lock:
            if task not in self._tasks or self._tasks[task] is not None:
                return
            if self._bar is None:
                self._bar = Progress(
                    "{task.description}",
                    BarColumn(),
                    TaskProgressColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=True,
                )
                self._bar.start()
            done, total = self._pending[task]
            self._tasks[task] = self._bar.add_task(task, completed=done, total=total)

    def _finish(self, task: str) -> None:
        tid = self._tasks.pop(task)
        self._pending.pop(task, None)
        if tid is not None:
            self._bar.remove_task(tid)
        if self._bar is not None and not any(t is not None for t in self._tasks.values()):
            self._bar.stop()
            self._bar = None

    def close(self) -> None:
        with self._lock:
            self._tasks.clear()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


def stderr_progress(console: Console, quiet: bool) -> StderrProgress | None:
    return None if quiet or not console.is_terminal else StderrProgress(console)


def shows_markdown(console: Console) -> bool:
    """The one decision about Markdown: answers are styled only on a terminal that allows colour
    (a console made by mmchat.env carries --no-color, NO_COLOR and isatty)."""
    return console.is_terminal and not console.no_color


class AnswerView:
    """An answer as it streams: live Markdown on a terminal, plain text (flushed per delta) otherwise."""

    def __init__(self, console: Console, markdown: bool | None = None):
        self.console, self.text = console, ""
        self.live: Live | None = None
        self._shown = 0.0
        if markdown is None:
            markdown = shows_markdown(console)
        if markdown:
            self.live = Live(Text("…", style="dim"), console=console, auto_refresh=False, transient=True)
            self.live.start(refresh=True)

    def add(self, delta: str) -> None:
        self.text += delta
        if self.live is None:
            self.console.file.write(delta)
            self.console.file.flush()
        elif time.monotonic() - self._shown >= REFRESH_S:
            self.live.update(_Tail(self.text), refresh=True)
            self._shown = time.monotonic()

    def close(self, *, interrupted: bool = False) -> None:
        if self.live is not None:
            self.live.stop()  # transient: the tail view goes, the whole answer is printed once
            self.live = None
            if self.text:
                self.console.print(Markdown(self.text))
        elif self.text and not self.text.endswith("\n"):
            self.console.file.write("\n")
            self.console.file.flush()
        if interrupted:
            self.console.print(Text("[interrupted]", style="dim yellow"))


class _Tail:
    """The last screenful of rendered Markdown, so a long answer streams without flicker."""

    def __init__(self, text: str):
        self.text = text

    def __rich_console__(self, console, options):
        lines = console.render_lines(Markdown(self.text), options, pad=False)
        lines = lines[-max(1, options.size.height - 2) :]
        for i, line in enumerate(lines):
            yield from line
            if i < len(lines) - 1:
                yield Segment.line()


def usage_lines(completion: Any) -> list[str]:
    """One answer's usage and timings, in the words `ask --stats` and the REPL's /stats both print."""
    u, t = completion.usage, completion.timings
    return [
        f"tokens: {u.prompt_tokens} prompt ({u.cached_tokens} cached, {u.image_tokens} image, "
        f"{u.audio_tokens} audio) + {u.completion_tokens} generated; finish: {completion.finish_reason}",
        f"seconds: load {t.load:.2f}, media decode {t.media_decode:.2f}, encode {t.media_encode:.2f}, "
        f"prompt {t.prompt:.2f}, generation {t.generation:.2f} "
        f"({t.tokens_per_second(u.completion_tokens):.1f} tokens/s), first token {t.first_token:.2f}",
    ]


def show_error(console: Console, error: MmchatError | str) -> None:
    """The one error line (as every command prints it), in red."""
    console.print(Text(one_line(error), style="bold red"), soft_wrap=True)
