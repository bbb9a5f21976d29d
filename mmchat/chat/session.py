"""The REPL's state and one handler per command (the loop that reads lines is chat/loop.py).

Any MmchatError prints one line and the conversation stays as it was; a failed or
interrupted turn is rolled back, or keeps its partial answer once one has begun.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from ..env import current
from ..errors import ContextOverflow, InputError, MmchatError
from ..options import GenerationOptions
from ..preview import Previewer
from ..render import AnswerView, show_error, usage_lines
from ..runner import Runner
from . import commands as cmd
from . import files
from .attaching import Attaching, RecordingWait, wait_for_line
from .background import BackgroundEncodes, Job
from .conversation import Conversation

RunnerFactory = Callable[[str], Runner]
CLIPBOARD_TOOLS = (
    ("wl-copy",),
    ("xclip", "-selection", "clipboard"),
    ("xsel", "--clipboard", "--input"),
    ("pbcopy",),
    ("clip.exe",),
)
KEYS_HELP = "Enter sends · Esc-Enter new line · Ctrl-V pastes an image or files · Ctrl-R search history · Ctrl-C stops an answer · Ctrl-D leaves"


class _Interrupted(Exception):
    """Ctrl-C before the first token: the turn is rolled back."""


class Chat(Attaching):
    """The REPL's state and one handler per command (attachments' in attaching.py); rendering goes
    through `console`."""

    def __init__(
        self,
        runner: Runner,
        factory: RunnerFactory,
        model_name: str,
        options: GenerationOptions,
        conv: Conversation,
        console: Console,
        info: Console | None = None,
        preview: Previewer | None = None,
    ):
        self.runner, self.factory, self.model_name = runner, factory, model_name
        self.options, self.conv, self.console = options, conv, console
        self.info = info or console  # notes and errors: stderr when stdin is a script
        self.last = None  # the last ChatCompletion
        self.notice = ""  # shown in the toolbar until the next turn
        self.background = BackgroundEncodes(runner)  # attachments encoded while the user types
        self.preview = preview  # None: previews are off (no terminal, --no-preview)
        self._encodes: dict[str, Job] = {}  # attachment URL -> its background encode, which counted its tokens
        self.recording_wait: RecordingWait = wait_for_line  # the loop shows the meter at a terminal

    # -- output ----------------------------------------------------------------------

    def note(self, text: str, style: str = "dim") -> None:
        self.info.print(Text(text, style=style), soft_wrap=True)

    def toolbar(self) -> str:
        n, used = len(self.conv.pending), self.last.usage.total_tokens if self.last else 0
        parts = [
            f" {Path(self.model_name).name or self.runner.capabilities().model_name}",
            f"{n} attachment{'s' * (n != 1)} pending" if n else "",
            f"context {used}/{self.runner.capabilities().n_ctx}",
            self.background.status(),
            self.notice,
        ]
        return " │ ".join(p for p in parts if p)

    def stop_background(self) -> None:
        """Stop every encode in the background and wait for the workers (before a model goes)."""
        self.background.cancel()
        self.background.wait()

    # -- dispatch --------------------------------------------------------------------

    def safely(self, command: cmd.Command) -> None:
        """Run one command; an error is one line and leaves the conversation as it was."""
        try:
            getattr(self, f"do_{type(command).__name__.lower()}")(command)
        except MmchatError as e:
            show_error(self.info, e)
        except KeyboardInterrupt:
            self.note("interrupted")
        except Exception as e:  # a bug must not end the session; MMCHAT_DEBUG=1 shows the traceback
            if current().debug:
                raise
            show_error(
                self.info, f"unexpected {type(e).__name__}: {e} (a bug: please report it; MMCHAT_DEBUG=1 shows where)"
            )

    def do_say(self, c: cmd.Say) -> None:
        self._turn(lambda: self.conv.user_turn(c.text), "your message was not kept (Up brings it back)")

    def do_retry(self, c: cmd.Retry) -> None:
        self._turn(self.conv.retry, "the previous answer is kept")

    def _turn(self, change: Callable[[], object], if_interrupted: str) -> None:
        """Change the conversation and answer it; any failure puts the conversation back."""
        snap = self.conv.snapshot()
        try:
            change()
            self.answer()
        except _Interrupted:
            self.conv.restore(snap)
            self.note(f"interrupted before the answer began: {if_interrupted}")
        except BaseException:
            self.conv.restore(snap)
            raise

    def answer(self) -> None:
        """Stream the model's answer to the conversation as it stands, and keep it."""
        self.notice = ""
        if self.background.running():  # the engine waits for it, then finds the media encoded
            self.note(f"{self.background.status()}: the answer starts once it is done")
        dropped = self._fit()
        while True:
            view, stream = AnswerView(self.console), None
            try:
                stream = self.runner.stream(self.conv.to_model(), self.options)
                for delta in stream:
                    view.add(delta)
            except ContextOverflow:  # raised before the first token: make room and ask again
                view.close()
                gone = self.conv.drop_oldest()
                if not gone:
                    raise
                dropped += gone
                continue
            except KeyboardInterrupt:
                self.runner.close_progress()
                view.text = partial = stream.text if stream is not None else ""
                if stream is not None:
                    stream.close()
                view.close(interrupted=bool(partial))
                if not partial:
                    raise _Interrupted from None
                self.conv.add_answer(partial, interrupted=True)
                break
            except BaseException:
                view.close()
                raise
            view.close()
            self.last = completion = stream.completion
            self.conv.add_answer(completion.content, used=completion.usage.total_tokens)
            self.runner.save_state()  # `chat --continue` and `/load` restore it, in any process
            if completion.finish_reason == "length" and completion.usage.completion_tokens >= self._max_tokens:
                self.note(f"(cut at max_tokens={self._max_tokens}: /set max_tokens to allow more)")
            break
        if dropped:
            n = len(dropped)
            self.notice = f"context full: {n} oldest message{'s' * (n != 1)} left the model's view"
            self.note(self.notice)

    @property
    def _max_tokens(self) -> int:
        return self.options.max_tokens

    def _fit(self) -> list:
        """Before a turn: leave room for the answer by dropping the oldest turns if needed."""
        n_ctx = self.runner.capabilities().n_ctx
        limit = n_ctx - min(self._max_tokens, n_ctx // 4)
        if self.conv.surely_fits(limit):
            return []
        return self.conv.fit(self.runner.count_tokens, limit)

    def do_system(self, c: cmd.System) -> None:
        if c.text is None:
            self.note(f"system prompt: {self.conv.system}" if self.conv.system else "no system prompt")
            return
        self.conv.set_system(c.text)
        self.note("system prompt set" if c.text else "system prompt removed")

    def do_set(self, c: cmd.Set) -> None:
        if c.name is None:
            self.note(" ".join(f"{k}={getattr(self.options, k)!r}" for k in cmd.SETTING_NAMES), style="")
            return
        self.options = self.options.replace(**{c.name: c.value})  # checked by the options' own rules
        self.note(f"{c.name} = {c.value!r}")

    def do_model(self, c: cmd.Model) -> None:
        self.note(f"loading {c.name}…")
        new = self.factory(c.name)  # the old model stays until the new one has loaded
        self.stop_background()
        old, self.runner, self.model_name = self.runner, new, c.name
        old.close()
        self.background = BackgroundEncodes(new)
        self._encodes.clear()  # their counts were the old model's
        self.conv.used, self.last = None, None
        self.note(f"now chatting with {new.capabilities().model_name} ({new.capabilities().describe()})")

    def do_clear(self, c: cmd.Clear) -> None:
        self.background.cancel()
        self.conv.clear()
        self.last, self.notice = None, ""
        self.note("new conversation")

    def do_undo(self, c: cmd.Undo) -> None:
        gone = self.conv.undo()
        answered = " and its answer" if len(gone) > 1 else ""
        self.note(f"removed your last message{answered}")

    def do_save(self, c: cmd.Save) -> None:
        path = files.save(self.conv, c.path, ref=c.ref)
        how = "media referenced by path" if c.ref else "media embedded"
        self.note(f"saved {len(self.conv.messages)} messages to {path} ({how})")

    def do_load(self, c: cmd.Load) -> None:
        conv = files.load(c.path)
        self.runner.check_media(conv.to_model())
        conv.pending = self.conv.pending
        self.conv, self.last = conv, None
        self.note(f"loaded {len(conv.messages)} messages from {c.path}")

    def do_copy(self, c: cmd.Copy) -> None:
        text = self.conv.last_answer()
        if text is None:
            raise InputError("nothing to copy yet: ask something first")
        self.note(copy_to_clipboard(text))

    def do_stats(self, c: cmd.Stats) -> None:
        self.note("\n".join(stats_lines(self.last, self.runner)), style="")

    def do_help(self, c: cmd.Help) -> None:
        self.note("\n".join(cmd.help_lines()), style="")
        self.note(f"{KEYS_HELP}. A line that is only a file path attaches it; // starts a message with /.")


def copy_to_clipboard(text: str) -> str:
    """Copy with the first clipboard tool that is installed and works; what happened, in one line."""
    tried = []
    for tool in CLIPBOARD_TOOLS:
        exe = shutil.which(tool[0])
        if exe is None:
            continue
        tried.append(tool[0])
        try:
            done = subprocess.run([exe, *tool[1:]], input=text.encode(), capture_output=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return f"copied {len(text)} characters with {tool[0]}"
    if tried:
        return f"copying failed with {', '.join(tried)}: is a graphical session running?"
    return "no clipboard tool found: install wl-clipboard, xclip or xsel (pbcopy and clip.exe work too)"


def stats_lines(last: Any, runner: Runner) -> list[str]:
    """What /stats prints: the last answer's usage and timings, and the engine's cache counters."""
    out = usage_lines(last) if last is not None else ["no finished answer yet"]
    out.append("engine: " + ", ".join(f"{k} {v}" for k, v in runner.stats.as_dict().items()))
    return out
