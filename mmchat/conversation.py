"""The conversation the REPL holds (no terminal here): messages, pending attachments, files.

Every turn sends the whole message list; the engine's KV-prefix reuse makes that cheap, so
this class only has to keep the list right: attachments are checked when attached (a bad
file never reaches a message), a failed turn is rolled back with a snapshot, the oldest
turns leave the model's window when the context fills, and /save writes atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import messages as msgs
from .errors import InputError, MmchatError, UnsupportedMedia
from .media import Kind

if TYPE_CHECKING:
    from .runner import Runner

Message = msgs.Message
SAVE_VERSION = 1
TURN_OVERHEAD = 16  # template tokens around one message, as an upper bound for the estimate


@dataclasses.dataclass(frozen=True)
class Attachment:
    """A file or URL waiting for the next user message, already proven to decode."""

    kind: Kind
    url: str  # what the message holds: local files as absolute paths, so --ref saves work anywhere
    label: str  # what the user typed


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The whole state, to undo a turn that failed half-way."""

    system: str | None
    messages: tuple[Message, ...]
    pending: tuple[Attachment, ...]
    first: int
    used: int | None
    used_upto: int


def check_attachment(runner: Runner, url: str, kind: Kind | None = None) -> Attachment:
    """Detect the kind from the bytes (unless forced), check the model takes it, decode it once."""
    from .sources import local_source, read_source

    source = local_source(url) or (read_source(url) if kind is None else None)
    if source is not None and kind is None:
        if source.kind is None:
            raise UnsupportedMedia(f"{source.label} is not an image, audio or video file mmchat knows: "
                                   "check the file, or force a kind with /image, /audio or /video")
        kind = source.kind
    assert kind is not None
    caps = runner.capabilities()
    if kind not in caps.kinds:
        raise UnsupportedMedia(f"{caps.model_name} takes {caps.describe()}, not {kind} ({url}): "
                               f"use a model whose mmproj takes {kind}")
    stored = str(source.path.resolve()) if source is not None and source.path is not None else url
    options = dict(runner.video_defaults) if kind == "video" else {}  # as the turn will ask: decoded once
    runner.load_media(msgs.MediaRef(kind, stored, options, "attach"))
    return Attachment(kind, stored, url)


class Conversation:
    """System prompt + messages + pending attachments; `to_model()` is what the model gets."""

    def __init__(self, system: str | None = None, messages: Sequence[Message] = ()):
        self.system = system or None
        self.messages: list[Message] = list(messages)
        self.pending: list[Attachment] = []
        self.first = 0  # messages before this index left the model's window (context full)
        self.used: int | None = None  # tokens in context after the last answer; None: unknown
        self._used_upto = 0  # len(messages) when `used` was measured

    # -- state -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(self.system, tuple(self.messages), tuple(self.pending), self.first, self.used, self._used_upto)

    def restore(self, snap: Snapshot) -> None:
        self.system, self.messages, self.pending = snap.system, list(snap.messages), list(snap.pending)
        self.first, self.used, self._used_upto = snap.first, snap.used, snap.used_upto

    def set_system(self, text: str | None) -> None:
        self.system = text or None
        self.used = None

    def clear(self) -> None:
        """A new conversation: messages and attachments go, the system prompt stays."""
        self.messages, self.pending, self.first, self.used = [], [], 0, None

    def to_model(self) -> list[Message]:
        """The messages the model sees: the system prompt, then the window of turns."""
        head = [msgs.system_message(self.system)] if self.system else []
        return head + [{"role": m["role"], "content": m["content"]} for m in self.messages[self.first:]]

    # -- attachments -----------------------------------------------------------------

    def attach(self, runner: Runner, url: str, kind: Kind | None = None) -> Attachment:
        """Check and add one attachment; a file that fails any check raises and is not added."""
        attachment = check_attachment(runner, url, kind)
        self.pending.append(attachment)
        return attachment

    def detach(self, index: int | None = None) -> list[Attachment]:
        """Remove pending attachment `index` (1-based), or all of them."""
        if index is None:
            gone, self.pending = self.pending, []
            return gone
        if not 1 <= index <= len(self.pending):
            have = f"1 to {len(self.pending)}" if self.pending else "none are pending"
            raise InputError(f"no attachment {index}: {have}; /attachments lists them")
        return [self.pending.pop(index - 1)]

    # -- turns -----------------------------------------------------------------------

    def user_turn(self, text: str) -> Message:
        """Add the user's message: pending attachments first, in order, then the text."""
        message = msgs.user_message(text, [msgs.media_part(a.kind, a.url) for a in self.pending])
        self.messages.append(message)
        self.pending = []
        return message

    def add_answer(self, text: str, *, interrupted: bool = False, used: int | None = None) -> None:
        """Keep the model's answer; an interrupted one keeps exactly what was generated."""
        message = msgs.assistant_message(text)
        if interrupted:
            message["interrupted"] = True  # shown and saved as metadata; the model sees only the text
        self.messages.append(message)
        self.used, self._used_upto = used, len(self.messages)

    def last_answer(self) -> str | None:
        for message in reversed(self.messages):
            if message["role"] == "assistant":
                return message["content"] if isinstance(message["content"], str) else _text_of(message)
        return None

    def undo(self) -> list[Message]:
        """Remove the last user message and everything after it (its answer)."""
        starts = [i for i, m in enumerate(self.messages) if m["role"] == "user"]
        if not starts:
            raise InputError("nothing to undo: the conversation has no messages from you")
        gone = self.messages[starts[-1]:]
        del self.messages[starts[-1]:]
        self.first = min(self.first, len(self.messages))
        self.used = None
        return gone

    def retry(self) -> Message | None:
        """Drop the last answer so it can be generated again; the removed answer, if any."""
        if not any(m["role"] == "user" for m in self.messages):
            raise InputError("nothing to retry: ask something first")
        removed = None
        if self.messages[-1]["role"] == "assistant":
            removed = self.messages.pop()
        self.used = None
        return removed

    # -- context window --------------------------------------------------------------

    def drop_oldest(self) -> list[Message]:
        """Move the oldest turn out of the model's window; [] when only the last user turn is left."""
        window = self.messages[self.first:]
        starts = [i for i, m in enumerate(window) if m["role"] == "user" and i > 0]
        if not starts:
            return []
        gone = window[:starts[0]]
        self.first += starts[0]
        self.used = None
        return gone

    def fit(self, count: Callable[[list[Message]], int], limit: int) -> list[Message]:
        """Drop the oldest turns until `count(to_model())` is at most `limit`; what was dropped."""
        dropped: list[Message] = []
        while count(self.to_model()) > limit:
            gone = self.drop_oldest()
            if not gone:
                break
            dropped += gone
        return dropped

    def surely_fits(self, limit: int) -> bool:
        """A cheap upper bound: known usage plus every byte of the new text fits, and no new media."""
        if self.used is None or self._used_upto > len(self.messages):
            return False
        new = self.messages[self._used_upto:]
        if next(msgs.iter_media(new), None) is not None:
            return False
        size = sum(len(_text_of(m).encode()) + TURN_OVERHEAD for m in new)
        return self.used + TURN_OVERHEAD + size <= limit  # one more overhead: the last answer's closing tokens

    # -- files -----------------------------------------------------------------------

    def to_json(self, *, embed: bool = True) -> dict[str, Any]:
        """{"messages": [...]} as OpenAI takes them; media as data: URLs unless embed=False."""
        out = [msgs.system_message(self.system)] if self.system else []
        cut = []
        for message in self.messages:
            content = message["content"]
            if embed and not isinstance(content, str):
                content = [_embedded(p) for p in content]
            if message.get("interrupted"):
                cut.append(len(out))
            out.append({"role": message["role"], "content": content})
        data: dict[str, Any] = {"messages": out}
        if cut:
            data["mmchat"] = {"version": SAVE_VERSION, "interrupted": cut}
        return data

    @classmethod
    def from_json(cls, data: Any) -> Conversation:
        """A saved conversation: {"messages": [...]} or a bare message list."""
        raw = data.get("messages") if isinstance(data, dict) else data
        if raw is None:
            raise InputError("no 'messages' list in the file: save one with /save")
        checked = msgs.validate_messages(raw)
        meta = data.get("mmchat", {}) if isinstance(data, dict) else {}
        for i in meta.get("interrupted", []) if isinstance(meta, dict) else []:
            if isinstance(i, int) and 0 <= i < len(checked) and checked[i]["role"] == "assistant":
                checked[i]["interrupted"] = True
        system = None
        if checked[0]["role"] == "system":
            system = _text_of(checked.pop(0))
        return cls(system, checked)

    def save(self, path: str | Path, *, ref: bool = False) -> Path:
        """Write the conversation as JSON atomically: the old file survives any failure."""
        target = Path(path).expanduser()
        text = json.dumps(self.to_json(embed=not ref), ensure_ascii=False, indent=1) + "\n"
        try:
            write_atomic(target, text)
        except OSError as e:
            raise InputError(f"cannot save to {target} ({e.strerror or e}): choose a writable path") from None
        return target

    @classmethod
    def load(cls, path: str | Path) -> Conversation:
        source = Path(path).expanduser()
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"file not found: {path}: check the path") from None
        except OSError as e:
            raise InputError(f"cannot read {path} ({e.strerror or e}): check the path") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path} is not a JSON conversation ({e}): load a file written by /save") from None
        try:
            return cls.from_json(data)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file beside `path`, fsync it, then rename it over `path` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the umask's, like open() would."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def engine_token_counter(runner: Runner) -> Callable[[list[Message]], int] | None:
    """Exact prompt size in tokens from the engine's own tokenizer, when the engine has one."""
    tokenize = getattr(runner.engine, "tokenize", None)
    if tokenize is None:
        return None

    def count(messages: list[Message]) -> int:
        items = tokenize(runner.prepare(messages))
        return sum(1 if isinstance(item, int) else item.n_tokens for item in items)

    return count


def _text_of(message: Message) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p.get("type") == "text")


def _embedded(part: msgs.Part) -> msgs.Part:
    """A media part with its bytes inlined as a data: URL, so the file stands alone."""
    ref = msgs.part_media(part)
    if ref is None or ref.url.startswith("data:") or part["type"] == "input_audio":
        return part
    from .sources import read_source

    try:
        source = read_source(ref.url)
    except MmchatError as e:
        raise type(e)(f"cannot embed {ref.url} ({e}): save with --ref to keep it as a path") from None
    body = {**part[part["type"]], "url": msgs.data_url(source.data, source.mime or "application/octet-stream")}
    return {"type": part["type"], part["type"]: body}
