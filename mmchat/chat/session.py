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

from .. import config
from ..env import current
from ..errors import ContextOverflow, InputError, MmchatError, one_line
from ..inputs.part import media_parts
from ..inputs.resolver import Attachment
from ..media import Kind, with_article
from ..options import GenerationOptions
from ..preview import Previewer, label_of
from ..render import AnswerView, usage_lines
from ..runner import Runner
from . import commands as cmd
from . import files
from .background import BackgroundEncodes, Job
from .conversation import Conversation

RunnerFactory = Callable[[str], Runner]
RecordingWait = Callable[[Any], str]  # waits while a Recorder records: what was typed; KeyboardInterrupt cancels
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


def show_error(console: Console, error: MmchatError | str) -> None:
    """The one error line (as every command prints it), in red."""
    console.print(Text(one_line(error), style="bold red"), soft_wrap=True)


class Chat:
    """The REPL's state and one handler per command; rendering goes through `console`."""

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

    def do_attach(self, c: cmd.Attach) -> None:
        from ..inputs.capture import keep

        for url in c.urls:  # each on its own: one bad file does not drop the good ones
            if url.strip().lower().startswith("mic:"):  # recorded as /rec does, with its meter
                try:
                    if c.kind not in (None, "audio"):
                        raise InputError(f"{url} records sound, not {with_article(c.kind)}: /rec or /audio {url}")
                    self.safely(cmd.Rec(_seconds(url)))
                except MmchatError as e:
                    show_error(self.info, e)
                continue
            try:
                kept = keep(url)  # clipboard: and screen: are captured now and kept as files
            except MmchatError as e:
                show_error(self.info, e)
                continue
            for found in kept:
                self._attach_one(found, c.kind)

    def _attach_one(self, url: str, kind: Kind | None) -> None:
        try:
            a = self.conv.attach(self.runner, url, kind)
        except MmchatError as e:
            show_error(self.info, e)
            return
        self.attached(a)

    def attached(self, a: Attachment) -> None:
        """The one step after any attachment is made (/attach, /paste, /screenshot, a dropped path,
        chat --image): say so, start its encode, show what the model gets."""
        self.note(f"attached {a.kind} {a.label} ({len(self.conv.pending)} pending)")
        job = self.background.start(a)  # first: the preview never delays the encode
        self._encodes[a.url] = job
        self.show(a, len(self.conv.pending), job)

    def show(self, a: Attachment, number: int | None = None, job: Job | None = None) -> None:
        """Draw an attachment as the model gets it, with its caption; a preview that fails is one line.
        The cost is what its encode `job` counted (waited for a moment), else counted now if the engine is free."""
        if self.preview is None:
            return
        try:
            segments = self.runner.decoded(a)

            def costs() -> list | None:  # asked once the picture is made: the encode counts meanwhile
                found = job.wait_costs(config.DEFAULT_PREVIEW_COST_WAIT) if job is not None else None
                if found is None and not self.background.running():  # the engine is free: counting costs nothing
                    found = self.runner.media_costs([s for s in segments if not isinstance(s, str)])
                elif found is None and a.url in self._encodes:  # busy: what its own encode counted, if it has
                    found = self._encodes[a.url].costs
                return found

            name = f"{number}. {label_of(a.label)}" if number else label_of(a.label)
            self.preview.show(name, a.kind, segments, costs)
        except MmchatError as e:
            show_error(self.info, f"no preview of {a.label}: {e}")
        except Exception as e:  # a preview must never cost the attachment
            if current().debug:
                raise
            show_error(self.info, f"no preview of {a.label}: unexpected {type(e).__name__}: {e}")

    def do_paste(self, c: cmd.Paste) -> None:
        """The clipboard's image or files become attachments; text is said to belong at the prompt."""
        from ..inputs.capture import clipboard_image, read_clipboard, save_capture

        clip = read_clipboard()
        if clip.files:
            for path in clip.files:
                self._attach_one(path, None)
            return
        self._attach_one(str(save_capture(clipboard_image(clip), "clipboard", "png")), "image")

    def do_screenshot(self, c: cmd.Screenshot) -> None:
        from ..inputs.capture import grab_screen, save_capture

        self._attach_one(str(save_capture(grab_screen(c.monitor), "screen", "png")), "image")

    def do_show(self, c: cmd.Show) -> None:
        if self.preview is None:
            raise InputError(
                "previews are off here (--no-preview, preview = false, or no terminal): "
                "/attachments lists the attachments"
            )
        pending = self.conv.pending
        if c.index is not None:
            if not 1 <= c.index <= len(pending):
                have = f"1 to {len(pending)}" if pending else "none are pending"
                raise InputError(f"no attachment {c.index}: {have}; /attachments lists them")
            self.show(pending[c.index - 1], c.index)
            return
        if pending:
            for i, a in enumerate(pending, 1):
                self.show(a, i)
            return
        users = [m for m in self.conv.messages if m["role"] == "user"]
        sent = media_parts(users[-1:])
        if not sent:
            raise InputError("nothing to show: /attach a file first")
        for part in sent:
            self.show(Attachment(part.kind, part.url, part.url))

    def do_rec(self, c: cmd.Rec) -> None:
        """Record until Enter (text typed meanwhile is sent with it) or for c.seconds; attach it."""
        from ..inputs.capture import save_capture
        from ..inputs.microphone import Recorder

        self.runner.inputs.check_kind("audio", "mic:")  # a model that cannot hear refuses before a sound is taken
        with Recorder(c.seconds) as recorder:
            self.note(
                f"recording from {recorder.device}: "
                + ("Ctrl-C cancels" if c.seconds else "Enter attaches it, Ctrl-C cancels")
            )
            try:
                typed = self.recording_wait(recorder)
            except KeyboardInterrupt:
                self.note("recording cancelled: nothing attached")
                return
            except EOFError:  # Ctrl-D ends the recording as Enter does
                typed = ""
            recording = recorder.stop()
        if recording.silent:
            self.note(f"warning: {recording.silence_warning()}", style="yellow")
        self._attach_one(str(save_capture(recording.wav(), "mic", "wav")), "audio")
        if typed.strip():
            self.do_say(cmd.Say(typed.strip()))

    def do_listattachments(self, c: cmd.ListAttachments) -> None:
        if not self.conv.pending:
            self.note("no attachments pending: /attach PATH adds one")
        for i, a in enumerate(self.conv.pending, 1):
            self.note(f"{i}. {a.kind} {a.label}", style="")

    def do_detach(self, c: cmd.Detach) -> None:
        gone = self.conv.detach(c.index)
        self.background.cancel(gone)
        self.note(f"detached {', '.join(a.label for a in gone)}" if gone else "no attachments pending")

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


def wait_for_line(recorder: Any, read: Callable[[], str] | None = None) -> str:
    """Without a terminal UI: a fixed length is waited for, else the next line read (stdin's) is Enter."""
    if recorder.seconds:
        recorder.wait()
        return ""
    if read is not None:
        return read()
    line = current().stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _seconds(url: str) -> float | None:
    from ..inputs.microphone import seconds_of
    from ..inputs.part import locate

    return seconds_of(locate(url))


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
