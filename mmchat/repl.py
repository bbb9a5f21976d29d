"""`mmchat chat`: the interactive loop on prompt_toolkit (thin: commands.py parses, conversation.py keeps state).

Enter sends, Esc-Enter adds a line, Ctrl-R searches history, Ctrl-C stops an answer (the
part generated so far is kept), Ctrl-D leaves. Any MmchatError prints one line and the
session goes on with the conversation as it was.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console
from rich.text import Text

from . import commands as cmd
from .conversation import Conversation, engine_token_counter
from .engine.base import SamplingOptions
from .errors import ContextOverflow, InputError, MmchatError
from .render import AnswerView
from .runner import Runner, sampling_options

RunnerFactory = Callable[[str], Runner]
CLIPBOARD_TOOLS = (("wl-copy",), ("xclip", "-selection", "clipboard"), ("xsel", "--clipboard", "--input"),
                   ("pbcopy",), ("clip.exe",))
KEYS_HELP = "Enter sends · Esc-Enter new line · Ctrl-R search history · Ctrl-C stops an answer · Ctrl-D leaves"


class _Interrupted(Exception):
    """Ctrl-C before the first token: the turn is rolled back."""


def run_chat(
    runner_factory: RunnerFactory,
    *,
    model_name: str,
    sampling: dict[str, Any],
    system: str | None,
    attachments: list[tuple[str | None, str]],
    history_path: Path,
    input: Any = None,
    output: Any = None,
    console: Console | None = None,
) -> int:
    """Run the chat until /exit or Ctrl-D; the exit code (nonzero only if the model fails to load)."""
    console = console or Console(highlight=False)
    scripted = input is None and not _stdin_is_terminal()
    info = Console(stderr=True, highlight=False) if scripted else console  # piped: stdout is answers only
    try:
        runner = runner_factory(model_name)
    except MmchatError as e:
        _error(info, e)
        return int(e.exit_code)
    chat = Chat(runner, runner_factory, model_name, dict(sampling), Conversation(system), console, info)
    try:
        caps = runner.capabilities()
        chat.note(f"{caps.model_name} takes {caps.describe()} · /help lists commands · Ctrl-D leaves")
        for kind, url in attachments:
            chat.safely(cmd.Attach((url,), kind))
        if scripted:  # one line per turn or command, no UI
            read = _plain_reader(sys.stdin)
        else:
            session: PromptSession[str] = PromptSession(
                history=_history(history_path, chat), input=input, output=output, completer=ChatCompleter(),
                key_bindings=_key_bindings(), bottom_toolbar=chat.toolbar, prompt_continuation="… ",
                complete_while_typing=True,
            )
            read = functools.partial(session.prompt, "> ")
        armed = False  # one Ctrl-C at an empty prompt arms, the second leaves
        while True:
            try:
                line = read()
            except KeyboardInterrupt:
                if armed:
                    return 0
                armed = True
                chat.note("press Ctrl-C again or type /exit to leave")
                continue
            except EOFError:
                return 0
            armed = False
            try:
                command = cmd.parse(line)
            except MmchatError as e:
                _error(info, e)
                continue
            if isinstance(command, cmd.Exit):
                return 0
            if command is not None:
                chat.safely(command)
    finally:
        chat.runner.close()


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _plain_reader(stream) -> Callable[[], str]:
    """Lines of a piped stdin as if typed at the prompt; EOFError at the end, like Ctrl-D."""

    def read() -> str:
        line = stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read


class Chat:
    """The REPL's state and one handler per command; rendering goes through `console`."""

    def __init__(self, runner: Runner, factory: RunnerFactory, model_name: str, sampling: dict[str, Any],
                 conv: Conversation, console: Console, info: Console | None = None):
        self.runner, self.factory, self.model_name = runner, factory, model_name
        self.sampling, self.conv, self.console = sampling, conv, console
        self.info = info or console  # notes and errors: stderr when stdin is a script
        self.last = None  # the last ChatCompletion
        self.notice = ""  # shown in the toolbar until the next turn

    # -- output ----------------------------------------------------------------------

    def note(self, text: str, style: str = "dim") -> None:
        self.info.print(Text(text, style=style), soft_wrap=True)

    def toolbar(self) -> str:
        n, used = len(self.conv.pending), self.last.usage.total_tokens if self.last else 0
        parts = [f" {Path(self.model_name).name or self.runner.capabilities().model_name}", f"{n} attachment{'s' * (n != 1)} pending" if n else "",
                 f"context {used}/{self.runner.capabilities().n_ctx}", self.notice]
        return " │ ".join(p for p in parts if p)

    # -- dispatch --------------------------------------------------------------------

    def safely(self, command: cmd.Command) -> None:
        """Run one command; an error is one line and leaves the conversation as it was."""
        try:
            getattr(self, f"do_{type(command).__name__.lower()}")(command)
        except MmchatError as e:
            _error(self.info, e)
        except KeyboardInterrupt:
            self.note("interrupted")
        except Exception as e:  # a bug must not end the session; MMCHAT_DEBUG=1 shows the traceback
            if os.environ.get("MMCHAT_DEBUG") == "1":
                raise
            _error(self.info, f"unexpected {type(e).__name__}: {e} "
                                 "(a bug: please report it; MMCHAT_DEBUG=1 shows where)")

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
        dropped = self._fit()
        while True:
            view, stream = AnswerView(self.console), None
            try:
                stream = self.runner.stream(self.conv.to_model(), **self.sampling)
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
            if completion.finish_reason == "length" and completion.usage.completion_tokens >= self._max_tokens:
                self.note(f"(cut at max_tokens={self._max_tokens}: /set max_tokens to allow more)")
            break
        if dropped:
            n = len(dropped)
            self.notice = f"context full: {n} oldest message{'s' * (n != 1)} left the model's view"
            self.note(self.notice)

    @property
    def _max_tokens(self) -> int:
        return self.sampling.get("max_tokens") or SamplingOptions.max_tokens

    def _fit(self) -> list:
        """Before a turn: leave room for the answer by dropping the oldest turns if needed."""
        n_ctx = self.runner.capabilities().n_ctx
        limit = n_ctx - min(self._max_tokens, n_ctx // 4)
        if self.conv.surely_fits(limit):
            return []
        count = engine_token_counter(self.runner)
        return self.conv.fit(count, limit) if count else []

    def do_attach(self, c: cmd.Attach) -> None:
        for url in c.urls:  # each on its own: one bad file does not drop the good ones
            try:
                a = self.conv.attach(self.runner, url, c.kind)
            except MmchatError as e:
                _error(self.info, e)
                continue
            self.note(f"attached {a.kind} {a.label} ({len(self.conv.pending)} pending)")

    def do_listattachments(self, c: cmd.ListAttachments) -> None:
        if not self.conv.pending:
            self.note("no attachments pending: /attach PATH adds one")
        for i, a in enumerate(self.conv.pending, 1):
            self.note(f"{i}. {a.kind} {a.label}", style="")

    def do_detach(self, c: cmd.Detach) -> None:
        gone = self.conv.detach(c.index)
        self.note(f"detached {', '.join(a.label for a in gone)}" if gone else "no attachments pending")

    def do_system(self, c: cmd.System) -> None:
        if c.text is None:
            self.note(f"system prompt: {self.conv.system}" if self.conv.system else "no system prompt")
            return
        self.conv.set_system(c.text)
        self.note("system prompt set" if c.text else "system prompt removed")

    def do_set(self, c: cmd.Set) -> None:
        if c.name is None:
            current = {**SamplingOptions().__dict__, **{k: v for k, v in self.sampling.items() if v is not None}}
            self.note(" ".join(f"{k}={current[k]!r}" for k in cmd.SETTING_NAMES), style="")
            return
        new = {**self.sampling, c.name: c.value}
        sampling_options(**new)  # the runner's own check, before anything changes
        self.sampling = new
        self.note(f"{c.name} = {c.value!r}")

    def do_model(self, c: cmd.Model) -> None:
        self.note(f"loading {c.name}…")
        new = self.factory(c.name)  # the old model stays until the new one has loaded
        old, self.runner, self.model_name = self.runner, new, c.name
        old.close()
        self.conv.used, self.last = None, None
        self.note(f"now chatting with {new.capabilities().model_name} ({new.capabilities().describe()})")

    def do_clear(self, c: cmd.Clear) -> None:
        self.conv.clear()
        self.last, self.notice = None, ""
        self.note("new conversation")

    def do_undo(self, c: cmd.Undo) -> None:
        gone = self.conv.undo()
        answered = " and its answer" if len(gone) > 1 else ""
        self.note(f"removed your last message{answered}")

    def do_save(self, c: cmd.Save) -> None:
        path = self.conv.save(c.path, ref=c.ref)
        how = "media referenced by path" if c.ref else "media embedded"
        self.note(f"saved {len(self.conv.messages)} messages to {path} ({how})")

    def do_load(self, c: cmd.Load) -> None:
        conv = Conversation.load(c.path)
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


class ChatCompleter(Completer):
    """Command names after '/', file paths after the commands that take them, setting names after /set."""

    def __init__(self) -> None:
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        name, space, arg = text.partition(" ")
        if not space:
            for command, (_, help_text) in {**cmd.COMMANDS, "/quit": ("", "leave")}.items():
                if command.startswith(name.lower()):
                    yield Completion(command, -len(name), display_meta=help_text)
        elif name in cmd.PATH_COMMANDS:
            word, quoted = _last_word(arg)
            for c in self.paths.get_completions(Document(word, len(word)), complete_event):
                text = c.text if quoted else c.text.replace(" ", "\\ ")
                yield Completion(text, c.start_position, display=c.display)
        elif name == "/set" and " " not in arg:
            for setting in cmd.SETTING_NAMES:
                if setting.startswith(arg):
                    yield Completion(setting, -len(arg))


def _last_word(text: str) -> tuple[str, bool]:
    """The word being typed, unquoted and unescaped as shlex would read it; and whether a quote is open."""
    word, quote, escaped = "", None, False
    for ch in text:
        if escaped:
            word, escaped = word + ch, False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            word, quote = (word, None) if ch == quote else (word + ch, quote)
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            word = ""
        else:
            word += ch
    return word, quote is not None


def _key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("c-c")
    def _interrupt(event) -> None:  # a typed line is cleared; an empty prompt raises (arms the exit)
        if event.current_buffer.text:
            event.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    return kb


def _history(path: Path, chat: Chat) -> History:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        return FileHistory(str(path))
    except OSError as e:
        chat.note(f"history is not saved: cannot write {path} ({e.strerror or e})")
        return InMemoryHistory()


def _error(console: Console, error: MmchatError | str) -> None:
    lines = str(error).strip().splitlines()
    console.print(Text(f"error: {lines[0] if lines else type(error).__name__}", style="bold red"), soft_wrap=True)


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
    out = []
    if last is None:
        out.append("no finished answer yet")
    else:
        u, t = last.usage, last.timings
        out.append(f"tokens: {u.prompt_tokens} prompt ({u.cached_tokens} cached, {u.image_tokens} image, "
                   f"{u.audio_tokens} audio) + {u.completion_tokens} generated; finish: {last.finish_reason}")
        out.append(f"seconds: load {t.load:.2f}, media decode {t.media_decode:.2f}, encode {t.media_encode:.2f}, "
                   f"prompt {t.prompt:.2f}, generation {t.generation:.2f} "
                   f"({t.tokens_per_second(u.completion_tokens):.1f} tokens/s), first token {t.first_token:.2f}")
    stats = getattr(runner.engine, "stats", None)
    if stats is not None:
        out.append("engine: " + ", ".join(f"{k} {v}" for k, v in stats.as_dict().items()))
    return out
