"""What happens to a media part: the one resolver from a parsed conversation to decoded segments.

A part names its media by a `Location` (parsed once, with the message: messages.py). The resolver
admits each part once (the media policy), checks its kind against what the model takes before a
byte is read, has it read and decoded (decode.py), and keeps what it decoded, so a conversation sent
again with one more turn decodes nothing again. The CLI, the REPL's /attach and /save, and the
Python API all come here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

from .. import config
from .. import messages as msgs
from ..engine.base import Capabilities, Progress, Segment, Turn
from ..errors import InputError, MediaRefused, MmchatError
from ..media import Audio, Image, Kind
from ..options import MediaOptions
from ..workingset import WorkingSet
from . import claims
from . import part as part_location
from .capture import written
from .decode import Decoded, Decoder, Digest, effective, head_holds, refuse_kind
from .part import DEVICES, Location
from .policy import Budget, MediaPolicy, device_refusal
from .sources import Source

#: on_media(ref, segments): a media part as it was decoded for a turn (ask --preview shows it)
OnMedia = Callable[[msgs.MediaPart, list[Segment]], None]
Messages = msgs.Conversation | Sequence[Any]  # parsed, or OpenAI dicts (parsed here, once)


@dataclasses.dataclass(frozen=True)
class Attachment:
    """A file or URL waiting for the next user message, already proven to decode."""

    kind: Kind  # what it shows as (a PDF's or text file's pages and text: image)
    url: str  # what the message holds: local files as absolute paths, so --ref saves work anywhere
    label: str  # what the user typed
    file: bool = False  # a PDF or text file: the message carries it as a file part (told by its content)
    media: msgs.MediaPart | None = dataclasses.field(default=None, compare=False)  # the part as it was decoded

    @property
    def part_kind(self) -> msgs.PartKind:
        return "file" if self.file else self.kind

    @property
    def media_part(self) -> msgs.MediaPart:
        """The part the resolver decoded (one made from the URL for an Attachment built by hand)."""
        return self.media or msgs.MediaPart(self.part_kind, part_location.locate(self.url), {}, where="attach")


class MediaResolver:
    """Parsed conversations -> turns of segments for one model, keeping the decoded media for a follow-up."""

    def __init__(
        self,
        capabilities: Capabilities,
        *,
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        cache_bytes: int = config.DEFAULT_MEDIA_CACHE_BYTES,
        policy: MediaPolicy | None = None,
        devices: bool = False,
    ):
        self.caps = capabilities
        self.devices = devices  # read clipboard:, screen: and mic: without a policy (the CLI); a policy says for itself
        self.policy = policy  # None: anything the user can read (the CLI)
        self._decoder = Decoder(capabilities, stdin, progress)
        # decoded media of the latest conversation, for its follow-up (workingset.py); the cap bounds one request
        self._cache: WorkingSet[tuple, Decoded] = WorkingSet(cache_bytes, lambda f: _nbytes(f[0]))
        self._digests: WorkingSet[str, Digest] = WorkingSet(math.inf)  # part URL (data: by its hash) -> what was read

    # -- whole conversations ---------------------------------------------------------

    def check(self, messages: Messages) -> None:
        """Refuse media the model cannot take, before anything is read."""
        for part in msgs.parse_conversation(messages).media():
            self.check_kind(part.kind, part.url, part.location)

    def check_kind(self, kind: msgs.PartKind, url: str, where: Location | None = None) -> None:
        """Refuse a kind the model cannot take. A file told by its content is checked by what a local
        file's head holds (a remote one when it is read); a PDF given as an image goes to a model that
        cannot see as its text."""
        self._check(kind, url, lambda: self._local_holds(where) if where is not None else None)

    def _check(self, kind: msgs.PartKind, url: str, holds: Callable[[], claims.Holds | None]) -> None:
        if kind == "file":
            found = holds() or claims.named(url)
            if found not in ("image", "audio", "video"):
                return  # a PDF or text file goes to any model; what nothing tells yet is checked once read
            kind = found  # type: ignore[assignment]
        elif kind == "image" and holds() == "pdf":
            return
        refuse_kind(self.caps, kind, url)

    def turns(self, messages: Messages, media: MediaOptions, on_media: OnMedia | None = None) -> list[Turn]:
        """Admit each part once and check its kind, then read and decode every media part, in order."""
        conversation = msgs.parse_conversation(messages)  # as it is when parsed already
        parts = conversation.media()
        admitted = [self._admitted(part.location) for part in parts]  # every part, before the first is read
        for part, where in zip(parts, admitted):
            self._check(part.kind, part.url, lambda w=where: head_holds(w) if isinstance(w, Location) else None)
        if sum(part.location.scheme == "stdin" for part in parts) > 1:
            raise InputError("only one media part can read standard input ('-')")
        for where in admitted:
            if isinstance(where, MmchatError):
                raise where
        budget = Budget(self.policy)
        pending = iter(zip(parts, admitted, conversation.placed() if on_media is not None else parts))
        turns = []
        for message in conversation:
            segments: list[Segment] = []
            for piece in message.parts:
                if isinstance(piece, msgs.TextPart):
                    segments.append(piece.text)
                    continue
                part, where, placed = next(pending)
                decoded = self.segments(part, media, budget, where=where)  # type: ignore[arg-type]
                if on_media is not None:  # with its place; a file as what it turned out to be
                    on_media(placed if part.kind != "file" else self._told(placed, media), decoded)
                segments.extend(decoded)
            turns.append(Turn(message.role, tuple(segments)))
        self._cache.settle()  # a follow-up sends this conversation again: what it did not use is of no more use
        self._digests.settle()
        return turns

    def kept(self) -> tuple[int, int]:
        """(media, bytes) of decoded pixels and samples kept for a follow-up."""
        return len(self._cache), self._cache.nbytes

    def forget(self) -> None:
        """Keep nothing for a follow-up (a batch never comes back to a request it has answered)."""
        self._cache.clear()
        self._digests.clear()

    def release(self, holds: Callable[[Image], bool]) -> None:
        """Let go of the pixels of kept images whose encoding the engine `holds`: a follow-up gets a
        stand-in of the same size and digest, which the engine takes without pixels."""
        for key in self._cache:
            found = self._cache.peek(key)
            if found is None:
                continue
            slim = [s.without_pixels() if isinstance(s, Image) and not s.released and holds(s) else s for s in found[0]]
            if any(a is not b for a, b in zip(slim, found[0])):
                self._cache.replace(key, found, (slim, *found[1:]))

    def drop_released(self) -> None:
        """Forget the stand-ins, so the next request reads and decodes their images again (the engine
        lost their encoding after all: a cache cap, a damaged disk entry)."""
        for key in self._cache:
            found = self._cache.peek(key)
            if found is not None and any(isinstance(s, Image) and s.released for s in found[0]):
                self._cache.pop(key)

    def _admit(self, where: Location) -> Location:
        """What may be read for this part: the policy's rules, or (without one) anything but this
        machine's devices unless the caller allowed them."""
        if self.policy is not None:
            return self.policy.admit(where)
        if where.scheme in DEVICES and not self.devices:
            raise MediaRefused(device_refusal(where, "Runner(devices=True) or a MediaPolicy(devices=True)"))
        return where

    def _admitted(self, where: Location) -> Location | MmchatError:
        """`_admit`, its refusal kept for later: a kind the model cannot take is said first."""
        try:
            return self._admit(where)
        except MmchatError as e:
            return e

    def _local_holds(self, where: Location) -> claims.Holds | None:
        """What a local file (one the policy lets us read) holds, from its first KiB; None for the rest."""
        if where.path is None:
            return None
        found = self._admitted(where)
        return head_holds(found) if isinstance(found, Location) else None

    # -- one part --------------------------------------------------------------------

    def segments(
        self,
        part: msgs.MediaPart,
        media: MediaOptions,
        budget: Budget | None = None,
        fetched: Source | None = None,
        where: Location | None = None,
    ) -> list[Segment]:
        """One media part, decoded (or remembered: a file by path, size and mtime; a URL by its text).
        `fetched`: the part's bytes when the caller has already read them; `where`: its admitted location."""
        where = where or self._admit(part.location)  # before the cache: a remembered file is still refused
        options = effective(self.caps, part, media)
        key = _media_key(part.kind, where, options)
        found = self._cache.get(key) if key else None
        if found is None:
            found = self._decoder.decode(part.kind, where, options, media, budget or Budget(self.policy), fetched)
            if key:
                self._cache.put(key, found)
        self._digests.put(_url_key(part.url), found[1])  # under what the message says: the log asks for it so
        return found[0]

    def _told(self, part: msgs.MediaPart, media: MediaOptions) -> msgs.MediaPart:
        """A file part as the kind its content told (image when it was read anew each time: stdin, devices)."""
        key = _media_key(part.kind, part.location, effective(self.caps, part, media))
        found = self._cache.peek(key) if key else None
        kind: Kind = found[2] if found else "image"
        options = {k: v for k, v in part.options.items() if k in msgs.PART_OPTIONS[kind]}  # a file's are any kind's
        return dataclasses.replace(part, kind=kind, options=options)

    def digest(self, url: str) -> str | None:
        """The sha256 of the bytes last read for `url` (what the conversation log keeps); None if never
        read, or not since the latest conversation."""
        return self.sha256(url, self._digests.peek(_url_key(url)))

    def read_for(self, messages: Messages) -> dict[str, Digest | None]:
        """url -> what was read for each media part of `messages`, taken as they are resolved: a later
        request may have settled the cache by the time the answer is logged."""
        return {p.url: self._digests.peek(_url_key(p.url)) for p in msgs.parse_conversation(messages).media()}

    def sha256(self, url: str, found: Digest | None) -> str | None:
        """`found` as a sha256: a video decoded from disk is hashed when asked, so nobody pays for it but the log."""
        if not isinstance(found, os.PathLike):
            return found
        written(found)  # a capture's file, written while the model answered
        try:
            with open(found, "rb") as f:
                hexdigest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return None  # gone since it was decoded: nothing to vouch for
        self._digests.replace(_url_key(url), found, hexdigest)  # the next turn's log does not hash it again
        return hexdigest

    # -- the REPL's attachments and saved files --------------------------------------

    def attachment(self, url: str, kind: Kind | None, media: MediaOptions) -> Attachment:
        """Detect the kind from the bytes (unless forced), check the model takes it, decode it once."""
        from .sources import local_source

        budget = Budget(self.policy)
        where = self._admit(part_location.locate(url))
        local = local_source(where)
        fetched = self._decoder.read(where, budget) if local is None and kind is None else None  # read once
        source = local or fetched
        part_kind: msgs.PartKind | None = kind
        if source is not None and kind is None:  # told by its content, as a file part is
            found = claims.judge(source.label, None, claims.holds(source.kind, source.data))
            kind, part_kind = (found, found) if found in ("image", "audio", "video") else ("image", "file")  # type: ignore[assignment]
        assert kind is not None
        self.check_kind(part_kind or kind, url, where)
        stored = str(source.path.resolve()) if source is not None and source.path is not None else where.text
        if where.pages:
            stored += f"#page={where.pages}"  # the pages travel with the part
        part = msgs.MediaPart(part_kind or kind, part_location.locate(stored), {}, where="attach")
        self.segments(part, media, budget, fetched)  # decoded now, reused by the turn
        return Attachment(kind, stored, url, file=part_kind == "file", media=part)


def _url_key(url: str) -> str:
    """A part's URL as a key; a data: URL by its hash, so its megabytes are not kept twice."""
    if url[:5].lower() != "data:":
        return url
    return "data:" + hashlib.blake2b(url.encode(), digest_size=16).hexdigest()


def _media_key(kind: Kind, where: Location, options: Mapping[str, Any]) -> tuple | None:
    """What identifies decoded media: a local file's path, size and mtime; a URL's text; and the options."""
    if where.scheme == "stdin" or where.scheme in DEVICES:  # read anew each time
        return None
    shaped = tuple(sorted((k, repr(v)) for k, v in options.items()))
    if where.path is None:  # data: and http(s): the URL names the content
        return (kind, hashlib.blake2b(where.text.encode(), digest_size=16).hexdigest(), shaped)
    try:
        st = os.stat(where.path)
    except OSError:
        return None  # the read itself reports the problem
    return (kind, str(where.path.resolve()), st.st_size, st.st_mtime_ns, shaped)


def _nbytes(segments: list[Segment]) -> int:
    return sum(
        0
        if isinstance(s, Image) and s.released
        else s.pixels.nbytes
        if isinstance(s, Image)
        else s.samples.nbytes
        if isinstance(s, Audio)
        else 0
        for s in segments
    )
