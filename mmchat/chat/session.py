"""The REPL's commands other than the attachments' (attaching.py), each registered beside its
handler; what they use is `ChatState`'s (state.py). The loop that reads lines is chat/loop.py.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from ..errors import InputError
from ..render import usage_lines
from ..runner import Runner
from . import commands as cmd
from . import files
from .attaching import Attaching
from .background import BackgroundEncodes

CLIPBOARD_TOOLS = (
    ("wl-copy",),
    ("xclip", "-selection", "clipboard"),
    ("xsel", "--clipboard", "--input"),
    ("pbcopy",),
    ("clip.exe",),
)
KEYS_HELP = "Enter sends · Esc-Enter new line · Ctrl-V pastes an image or files · Ctrl-R search history · Ctrl-C stops an answer · Ctrl-D leaves"


class Chat(Attaching):
    """The REPL's commands beside the attachments' (attaching.py), each registered with its handler;
    the state they use is `ChatState`'s (state.py), and rendering goes through `console`."""

    @cmd.command(
        "/system",
        "[TEXT]",
        "set the system prompt; without TEXT show it; '/system --clear' removes it",
        parse=cmd.parse_system,
    )
    def do_system(self, c: cmd.System) -> None:
        if c.text is None:
            self.note(f"system prompt: {self.conv.system}" if self.conv.system else "no system prompt")
            return
        self.conv.set_system(c.text)
        self.note("system prompt set" if c.text else "system prompt removed")

    @cmd.command(
        "/set", "[NAME VALUE]", "change a sampling setting; without arguments show them all", parse=cmd.parse_set
    )
    def do_set(self, c: cmd.Set) -> None:
        if c.name is None:
            self.note(" ".join(f"{k}={getattr(self.options, k)!r}" for k in cmd.SETTING_NAMES), style="")
            return
        self.options = self.options.replace(**{c.name: c.value})  # checked by the options' own rules
        self.note(f"{c.name} = {c.value!r}")

    @cmd.command("/model", "NAME", "switch to another model and keep the conversation", parse=cmd.parse_model)
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

    @cmd.command("/clear", "", "start a new conversation (the system prompt stays)")
    def do_clear(self, c: cmd.Clear) -> None:
        self.background.cancel()
        self.conv.clear()
        self.last, self.notice = None, ""
        self.note("new conversation")

    @cmd.command("/retry", "", "generate the last answer again")
    def do_retry(self, c: cmd.Retry) -> None:
        self.turn(self.conv.retry, "the previous answer is kept")

    @cmd.command("/undo", "", "remove your last message and its answer")
    def do_undo(self, c: cmd.Undo) -> None:
        gone = self.conv.undo()
        answered = " and its answer" if len(gone) > 1 else ""
        self.note(f"removed your last message{answered}")

    @cmd.command(
        "/save",
        "FILE [--ref]",
        "save the conversation as JSON; --ref keeps media as paths instead of embedding them",
        parse=cmd.parse_save,
        paths=True,
    )
    def do_save(self, c: cmd.Save) -> None:
        path = files.save(self.conv, c.path, ref=c.ref)
        how = "media referenced by path" if c.ref else "media embedded"
        self.note(f"saved {len(self.conv.messages)} messages to {path} ({how})")

    @cmd.command(
        "/load",
        "FILE",
        "load a conversation saved with /save (or any OpenAI-style message list)",
        parse=cmd.parse_load,
        paths=True,
    )
    def do_load(self, c: cmd.Load) -> None:
        conv = files.load(c.path)
        self.runner.check_media(conv.to_model())
        conv.pending = self.conv.pending
        self.conv, self.last = conv, None
        self.note(f"loaded {len(conv.messages)} messages from {c.path}")

    @cmd.command("/copy", "", "copy the last answer to the clipboard")
    def do_copy(self, c: cmd.Copy) -> None:
        text = self.conv.last_answer()
        if text is None:
            raise InputError("nothing to copy yet: ask something first")
        self.note(copy_to_clipboard(text))

    @cmd.command("/stats", "", "show token counts, timings and cache counters of the last answer")
    def do_stats(self, c: cmd.Stats) -> None:
        self.note("\n".join(stats_lines(self.last, self.runner)), style="")

    @cmd.command("/help", "", "show this list")
    def do_help(self, c: cmd.Help) -> None:
        self.note("\n".join(cmd.help_lines()), style="")
        self.note(f"{KEYS_HELP}. A line that is only a file path attaches it; // starts a message with /.")

    @cmd.command("/exit", "", "leave (also /quit, Ctrl-D)", aliases={"/quit": "leave"})
    def do_exit(self, c: cmd.Exit) -> bool:
        return True


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
