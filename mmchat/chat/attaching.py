"""The REPL's attachments: made (/attach, a dropped path, /paste, /screenshot, /rec), shown as the
model gets them (/show), listed and removed. `Chat` (session.py) has these handlers; every way of
adding one ends in `attached`: a note, the background encode, then the preview.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import config
from ..env import current
from ..errors import InputError, MmchatError
from ..inputs.resolver import Attachment
from ..media import Kind, with_article
from ..messages import MediaPart
from ..preview import label_of
from ..render import show_error
from . import commands as cmd
from .state import ChatState

if TYPE_CHECKING:
    from .background import Job

RecordingWait = Callable[[Any], str]  # waits while a Recorder records: what was typed; KeyboardInterrupt cancels


class Attaching(ChatState):
    """The attachment commands of `Chat`; the state they use is `ChatState`'s (state.py)."""

    @cmd.command(
        "/attach",
        "PATH|URL...",
        "attach files or URLs to your next message (kind detected from the bytes)",
        parse=cmd.parse_attach,
        paths=True,
    )
    @cmd.command("/image", "PATH|URL...", "attach as images", parse=cmd.parse_attach, paths=True)
    @cmd.command("/audio", "PATH|URL...", "attach as audio", parse=cmd.parse_attach, paths=True)
    @cmd.command("/video", "PATH|URL...", "attach as videos", parse=cmd.parse_attach, paths=True)
    def do_attach(self, c: cmd.Attach) -> None:
        from ..inputs import part as part_location
        from ..inputs.capture import keep
        from ..inputs.microphone import seconds_of

        for url in c.urls:  # each on its own: one bad file does not drop the good ones
            try:
                where = part_location.locate(url)
                if where.scheme == "mic":  # recorded as /rec does, with its meter
                    if c.kind not in (None, "audio"):
                        raise InputError(f"{url} records sound, not {with_article(c.kind)}: /rec or /audio {url}")
                    self.safely(cmd.Rec(seconds_of(where)))
                    continue
                kept = keep(where)  # clipboard: and screen: are captured now and kept as files
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
        self.note(f"attached {'file' if a.file else a.kind} {a.label} ({len(self.conv.pending)} pending)")
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

    @cmd.command("/paste", "", "attach what the clipboard holds: an image, or the files copied (also Ctrl+V)")
    def do_paste(self, c: cmd.Paste) -> None:
        """The clipboard's image or files become attachments; text is said to belong at the prompt."""
        from ..inputs.capture import clipboard_image, read_clipboard, save_capture

        clip = read_clipboard()
        if clip.files:
            for path in clip.files:
                self._attach_one(path, None)
            return
        self._attach_one(str(save_capture(clipboard_image(clip), "clipboard", "png")), "image")

    @cmd.command(
        "/screenshot", "[N]", "attach a screenshot of the whole screen, or of monitor N", parse=cmd.parse_screenshot
    )
    def do_screenshot(self, c: cmd.Screenshot) -> None:
        from ..inputs.capture import grab_screen, save_capture

        self._attach_one(str(save_capture(grab_screen(c.monitor), "screen", "png")), "image")

    @cmd.command(
        "/rec",
        "[SECONDS]",
        "record from the microphone until Enter (Ctrl-C cancels), or for SECONDS, and attach it",
        parse=cmd.parse_rec,
    )
    def do_rec(self, c: cmd.Rec) -> None:
        """Record until Enter (text typed meanwhile is sent with it) or for c.seconds; attach it."""
        from ..inputs.capture import save_capture
        from ..inputs.microphone import Recorder

        self.runner.check_kind("audio", "mic:")  # a model that cannot hear refuses before a sound is taken
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

    @cmd.command("/attachments", "", "list the attachments waiting for your next message")
    def do_listattachments(self, c: cmd.ListAttachments) -> None:
        if not self.conv.pending:
            self.note("no attachments pending: /attach PATH adds one")
        for i, a in enumerate(self.conv.pending, 1):
            self.note(f"{i}. {'file' if a.file else a.kind} {a.label}", style="")

    @cmd.command("/detach", "[N]", "remove pending attachment N (1-based), or all of them", parse=cmd.parse_index)
    def do_detach(self, c: cmd.Detach) -> None:
        gone = self.conv.detach(c.index)
        self.background.cancel(gone)
        self.note(f"detached {', '.join(a.label for a in gone)}" if gone else "no attachments pending")

    @cmd.command(
        "/show",
        "[N]",
        "show pending attachment N as the model gets it; without N all of them, or your last message's",
        parse=cmd.parse_index,
    )
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
        users = [m for m in self.conv.messages if m.role == "user"]
        sent = [p for p in users[-1].parts if isinstance(p, MediaPart)] if users else []  # parsed: as they are
        if not sent:
            raise InputError("nothing to show: /attach a file first")
        for part in sent:
            self.show(Attachment(part.kind, part.url, part.url, media=part))


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
