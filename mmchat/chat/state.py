"""What one chat holds and how a turn is answered; the command handlers build on it (attaching.py,
session.py), so every attribute a handler uses is declared and set here.

Any MmchatError prints one line and the conversation stays as it was; a failed or
interrupted turn is rolled back, or keeps its partial answer once one has begun.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from ..env import current
from ..errors import ContextOverflow, MmchatError
from ..options import GenerationOptions
from ..preview import Previewer
from ..render import AnswerView, show_error
from ..runner import Runner
from . import commands as cmd
from .background import BackgroundEncodes, Job
from .conversation import Conversation, Message

if TYPE_CHECKING:
    from .attaching import RecordingWait

RunnerFactory = Callable[[str], Runner]


class _Interrupted(Exception):
    """Ctrl-C before the first token: the turn is rolled back."""


class ChatState:
    """The model, the conversation and the output of one chat; `safely` runs a command through the
    registry, and plain text is a turn (`do_say`)."""

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
        self.last: Any = None  # the last ChatCompletion
        self.notice = ""  # shown in the toolbar until the next turn
        self.background = BackgroundEncodes(runner)  # attachments encoded while the user types
        self.preview = preview  # None: previews are off (no terminal, --no-preview)
        self._encodes: dict[str, Job] = {}  # attachment URL -> its background encode, which counted its tokens
        from .attaching import wait_for_line  # attaching.py builds on this module

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

    def safely(self, command: cmd.Command) -> bool:
        """Run one command with its registered handler; True when the chat should end. An error is
        one line and leaves the conversation as it was."""
        try:
            return bool(cmd.REGISTRY.handler(command)(self, command))
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
        return False

    # -- turns -----------------------------------------------------------------------

    @cmd.handles(cmd.Say)
    def do_say(self, c: cmd.Say) -> None:
        self.turn(lambda: self.conv.user_turn(c.text), "your message was not kept (Up brings it back)")

    def turn(self, change: Callable[[], object], if_interrupted: str) -> None:
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
        while not self._answer_once(dropped):
            pass
        if dropped:
            n = len(dropped)
            self.notice = f"context full: {n} oldest message{'s' * (n != 1)} left the model's view"
            self.note(self.notice)

    def _answer_once(self, dropped: list[Message]) -> bool:
        """One try at the answer; False when the context overflowed and the oldest turn made room
        (added to `dropped`) for another try."""
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
            return False
        except KeyboardInterrupt:
            self.runner.close_progress()
            view.text = partial = stream.text if stream is not None else ""
            if stream is not None:
                stream.close()
            view.close(interrupted=bool(partial))
            if not partial:
                raise _Interrupted from None
            self.conv.add_answer(partial, interrupted=True)
            return True
        except BaseException:
            view.close()
            raise
        view.close()
        self.last = completion = stream.completion
        self.conv.add_answer(completion.content, used=completion.usage.total_tokens)
        self.runner.save_state()  # `chat --continue` and `/load` restore it, in any process
        if completion.finish_reason == "length" and completion.usage.completion_tokens >= self.options.max_tokens:
            self.note(f"(cut at max_tokens={self.options.max_tokens}: /set max_tokens to allow more)")
        return True

    def _fit(self) -> list[Message]:
        """Before a turn: leave room for the answer by dropping the oldest turns if needed."""
        n_ctx = self.runner.capabilities().n_ctx
        limit = n_ctx - min(self.options.max_tokens, n_ctx // 4)
        if self.conv.surely_fits(limit):
            return []
        return self.conv.fit(self.runner.count_tokens, limit)
