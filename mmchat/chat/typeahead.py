"""What the user typed before the first prompt reaches it.

People type their question while a model loads. The preview's terminal query (preview/detect.py)
reads the terminal's input while it waits for the answer, so it reads those keys too; it keeps them
on the Terminal, and here they become prompt_toolkit's typeahead (the mechanism prompt_toolkit
itself uses for keys read too early: prompt_toolkit/input/typeahead.py), in order. A terminal that
did not answer in time may answer later, into the prompt: its input then takes replies out
(`LateReplies`), so they never show up as typed text.
"""

from __future__ import annotations

from typing import IO, Any

from prompt_toolkit.input import Input
from prompt_toolkit.input.typeahead import store_typeahead
from prompt_toolkit.input.vt100 import Vt100Input
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyPress


def prompt_input(terminal: Any, stdin: IO[str]) -> Input | None:
    """The prompt's input on `stdin` (a terminal), fed first with the keys typed while `terminal`
    was asked; None (prompt_toolkit's own) when nothing was typed and no answer is still due."""
    if not terminal.typed and terminal.late_replies is None:
        return None
    input = _Keys(stdin, terminal.late_replies)
    typed, terminal.typed = terminal.typed, b""
    keys: list[KeyPress] = []
    parser = Vt100Parser(keys.append)
    parser.feed(typed.decode("utf-8", "replace"))
    parser.flush()
    store_typeahead(input, keys)
    return input


class _Keys(Vt100Input):
    """A terminal's keys with a late answer to the preview's query taken out."""

    def __init__(self, stdin: IO[str], late: Any) -> None:
        super().__init__(stdin)  # type: ignore[arg-type]
        self._late = late

    def read_keys(self) -> list[KeyPress]:
        data = self.stdin_reader.read()
        if self._late is not None:
            data = self._late.feed(data.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
        self.vt100_parser.feed(data)
        keys, self._buffer = self._buffer, []
        return keys

    def flush_keys(self) -> list[KeyPress]:
        if self._late is not None:  # a held start that nothing completed was a key after all
            self.vt100_parser.feed(self._late.flush().decode("utf-8", "surrogateescape"))
        return super().flush_keys()
