"""`mmchat chat`'s loop on prompt_toolkit: read a line, parse it (commands.py), hand it to the
session (session.py). Completion, key bindings and history live here too.

Enter sends, Esc-Enter adds a line, Ctrl-V attaches an image or files from the clipboard (text
is typed), Ctrl-R searches history, Ctrl-C stops an answer (the
part generated so far is kept), Ctrl-D leaves. With a piped stdin there is no prompt UI:
one line per turn, answers alone on stdout, notes and errors on stderr.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console

from ..env import Environment, current
from ..errors import MmchatError
from ..messages import Message
from ..options import DisplayOptions, GenerationOptions
from ..render import show_error
from . import commands as cmd
from .attaching import wait_for_line
from .conversation import Conversation
from .history import SafeFileHistory
from .session import Chat
from .state import RunnerFactory

if TYPE_CHECKING:
    from ..preview import Previewer


def run_chat(
    runner_factory: RunnerFactory,
    *,
    model_name: str,
    options: GenerationOptions | None = None,
    system: str | None = None,
    messages: Sequence[Message | dict[str, Any]] = (),
    attachments: Sequence[tuple[str | None, str]] = (),
    history_path: Path,
    env: Environment | None = None,
    no_color: bool = False,
    display: DisplayOptions | None = None,
    input: Any = None,
    output: Any = None,
    console: Console | None = None,
) -> int:
    """Run the chat until /exit or Ctrl-D; the exit code (nonzero only if the model fails to load).
    `messages` are a conversation to go on with (`chat --continue`: parsed when the log was read, kept as
    they are; dicts are parsed once). Attachments are previewed where
    notes go (stdout, or stderr when stdin is a script) when that is a terminal, unless `display` says no.

    Ctrl-C while the model loads is not caught here: it ends the command with 130, as anywhere.
    """
    env = env or current()
    console = console or env.stdout_console(no_color)
    scripted = input is None and not env.isatty("stdin")
    info = env.stderr_console(no_color) if scripted else console  # piped: stdout is answers only
    try:
        runner = runner_factory(model_name)
    except MmchatError as e:
        show_error(info, e)
        return int(e.exit_code)
    previewer = _previewer(env, scripted, display or DisplayOptions(), no_color)
    if previewer is not None and not scripted:
        previewer.graphics  # the terminal is asked now, before the prompt reads keys
        if input is None and previewer.terminal is not None:  # keys typed while it was asked go to the prompt
            from .typeahead import prompt_input

            input = prompt_input(previewer.terminal, env.stdin)
    conv = Conversation(system, messages)
    chat = Chat(runner, runner_factory, model_name, options or GenerationOptions(), conv, console, info, previewer)
    try:
        caps = runner.capabilities()
        chat.note(f"{caps.model_name} takes {caps.describe()} · /help lists commands · Ctrl-D leaves")
        for kind, url in attachments:  # -i: told by its content, as /attach does
            chat.safely(cmd.Attach((url,), None if kind in (None, "file") else kind))
        if scripted:  # one line per turn or command, no UI
            read = _plain_reader(env.stdin)
            chat.recording_wait = functools.partial(wait_for_line, read=read)  # the next line ends /rec
            return _loop(chat, read)
        return _prompt_loop(chat, history_path, input, output)
    finally:
        chat.stop_background()
        chat.runner.close()


def _previewer(env: Environment, scripted: bool, display: DisplayOptions, no_color: bool) -> Previewer | None:
    """Previews go where notes go: stdout, or stderr when stdin is a script; None when they are off."""
    from ..preview import Previewer

    return Previewer.for_stream(
        env,
        "stderr" if scripted else "stdout",
        setting=display.preview,
        default=True,
        no_color=no_color,
        rows=display.preview_rows,
    )


def _prompt_loop(chat: Chat, history_path: Path, input: Any, output: Any) -> int:
    """The loop at a terminal: prompt_toolkit's prompt, with history, completion, keys and the toolbar."""
    session: PromptSession[str] = PromptSession(
        history=_history(history_path, chat),
        input=input,
        output=output,
        completer=ChatCompleter(),
        key_bindings=_key_bindings(chat),
        bottom_toolbar=chat.toolbar,
        prompt_continuation="… ",
        complete_while_typing=True,
        refresh_interval=0.5,  # the toolbar shows background encodes
    )
    chat.recording_wait = functools.partial(_recording_prompt, input=input, output=output)
    return _loop(chat, functools.partial(session.prompt, "> "))


def _loop(chat: Chat, read: Callable[[], str]) -> int:
    """Read, parse, run, until /exit, Ctrl-D or Ctrl-C twice at an empty prompt."""
    armed = False  # one Ctrl-C at an empty prompt arms, the second leaves
    while True:
        try:
            line = read()
        except KeyboardInterrupt:
            if chat.background.cancel():
                chat.note("stopped encoding in the background: the next question encodes what it needs")
                continue
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
            show_error(chat.info, e)
            continue
        if command is not None and chat.safely(command):  # /exit
            return 0


def _recording_prompt(recorder: Any, *, input: Any = None, output: Any = None) -> str:
    """While /rec records: a prompt whose toolbar shows the elapsed time and the input level;
    Enter ends it (what was typed is sent with the recording), Ctrl-C cancels, and a fixed
    length (or the longest recording kept) ends it by itself."""
    import asyncio

    from prompt_toolkit.application import get_app

    session: PromptSession[str] = PromptSession(input=input, output=output)
    how = "Ctrl-C cancels" if recorder.seconds else "Enter attaches (with what you type) · Ctrl-C cancels"

    def watch() -> None:
        app = get_app()

        async def ended() -> None:
            while not recorder.done:
                await asyncio.sleep(0.05)
            if not recorder.seconds:  # the longest recording kept: the user still presses Enter
                return
            if not app.is_done:
                app.exit(result=app.current_buffer.text)

        app.create_background_task(ended())

    return session.prompt(
        "● rec> ",
        bottom_toolbar=lambda: f" ● recording {recorder.meter()} │ {how}",
        refresh_interval=0.1,
        pre_run=watch,
    )


def _plain_reader(stream) -> Callable[[], str]:
    """Lines of a piped stdin as if typed at the prompt; EOFError at the end, like Ctrl-D."""

    def read() -> str:
        line = stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read


class ChatCompleter(Completer):
    """Command names after '/', file paths after the commands that take them, setting names after /set:
    all from the commands' registry."""

    def __init__(self) -> None:
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        name, space, arg = text.partition(" ")
        spec = cmd.REGISTRY.find(name) if space else None
        if not space:
            specs = cmd.REGISTRY.specs()
            named = [(s.name, s.help) for s in specs] + [item for s in specs for item in s.aliases.items()]
            for command, help_text in named:
                if command.startswith(name.lower()):
                    yield Completion(command, -len(name), display_meta=help_text)
        elif spec is not None and spec.paths:
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


def _key_bindings(chat: Chat | None = None) -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-v")
    def _paste(event) -> None:  # an image or files on the clipboard attach; text is typed, as a paste is
        from prompt_toolkit.application import run_in_terminal

        from ..inputs.capture import read_clipboard

        try:
            clip = read_clipboard()
        except MmchatError as e:
            error = e
            if chat is not None:
                run_in_terminal(lambda: show_error(chat.info, error))
            return
        if clip.text is not None or chat is None:
            event.current_buffer.insert_text(clip.text or "")
        else:
            run_in_terminal(lambda: chat.safely(cmd.Paste()))

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
        return SafeFileHistory(path, chat.note)
    except OSError as e:
        chat.note(f"history is not saved: cannot write {path} ({e.strerror or e})")
        return InMemoryHistory()
