"""What happens to a media part: the one resolver from message parts to decoded segments.

A part names its media by URL (a path, file://, data:, http(s)://, '-'). The resolver checks
the kind against what the model takes before a byte is read, reads it (sources.py), checks
that the bytes are the kind the part claims (sniff.py), decodes them (media/) with the
request's options, lays a video out as the model will see it (engine/layout.py), and keeps
what it decoded, so a conversation sent again with one more turn decodes nothing again.
The CLI, the REPL's /attach and /save, and the Python API all come here.
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
from ..errors import InputError, MediaRefused, MmchatError, UnsupportedMedia
from ..media import Audio, Image, Kind, with_article
from ..options import MediaOptions
from ..values import parse_segment
from ..workingset import WorkingSet
from . import claims
from .capture import fresh, written
from .part import DEVICES, Location, MediaPart, locate, media_parts, short
from .policy import Budget, MediaPolicy, device_refusal

Digest = str | os.PathLike  # the sha256 of the bytes read, or a local file's path, hashed when asked


#: on_media(ref, segments): a media part as it was decoded for a turn (ask --preview shows it)
OnMedia = Callable[[MediaPart, list[Segment]], None]


@dataclasses.dataclass(frozen=True)
class Attachment:
    """A file or URL waiting for the next user message, already proven to decode."""

    kind: Kind  # what it shows as (a PDF's or text file's pages and text: image)
    url: str  # what the message holds: local files as absolute paths, so --ref saves work anywhere
    label: str  # what the user typed
    file: bool = False  # a PDF or text file: the message carries it as a file part (told by its content)

    @property
    def part_kind(self) -> msgs.PartKind:
        return "file" if self.file else self.kind

    @property
    def part(self) -> msgs.Part:
        return msgs.media_part(self.part_kind, self.url)


class MediaResolver:
    """Message parts -> segments for one model (its capabilities decide what it may be given)."""

    def __init__(
        self,
        capabilities: Capabilities,
        *,
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        cache_bytes: int = config.DEFAULT_MEDIA_CACHE_BYTES,
        policy: MediaPolicy | None = None,
        notice: Callable[[str], None] | None = None,
        devices: bool = False,
    ):
        self.caps = capabilities
        self.devices = devices  # read clipboard:, screen: and mic: without a policy (the CLI); a policy says for itself
        self._notice = notice or (lambda message: None)  # what a PDF's pages left out, a text-only reading
        self.policy = policy  # None: anything the user can read (the CLI)
        self._stdin = stdin
        self._progress = progress
        # decoded media of the latest conversation, for its follow-up (workingset.py); the cap bounds one request
        # (segments, digest, the kind they were read as)
        self._cache: WorkingSet[tuple, tuple[list[Segment], Digest, Kind]] = WorkingSet(
            cache_bytes, lambda f: _nbytes(f[0])
        )
        self._digests: WorkingSet[str, Digest] = WorkingSet(math.inf)  # part URL (data: by its hash) -> what was read

    # -- whole conversations ---------------------------------------------------------

    def check(self, messages: Sequence[msgs.Message]) -> None:
        """Refuse media the model cannot take, before anything is read."""
        for part in media_parts(messages):
            self.check_kind(part.kind, part.url, part.location)

    def check_kind(self, kind: msgs.PartKind, url: str, where: Location | None = None) -> None:
        """Refuse a kind the model cannot take. A file told by its content is checked by what a local
        file's head holds (a remote one when it is read); a PDF given as an image goes to a model that
        cannot see as its text."""
        if kind == "file":
            found = (self._local_holds(where) if where is not None else None) or claims.named(url)
            if found not in ("image", "audio", "video"):
                return  # a PDF or text file goes to any model; what nothing tells yet is checked once read
            kind = found
        elif kind == "image" and where is not None and self._local_holds(where) == "pdf":
            return
        if kind not in self.caps.kinds:
            what = "images" if kind == "image" else kind
            raise UnsupportedMedia(
                f"{self.caps.model_name} takes {self.caps.describe()}, not {what} ({short(url)}): "
                f"use a model that takes {what} (a local model's mmproj decides)"
            )

    def turns(
        self, messages: Sequence[msgs.Message], media: MediaOptions, on_media: OnMedia | None = None
    ) -> list[Turn]:
        """Validate, check kinds, then read and decode every media part, in order."""
        checked = msgs.validate_messages(messages)
        parts = media_parts(checked)
        for part in parts:
            self.check_kind(part.kind, part.url, part.location)
        if sum(part.location.scheme == "stdin" for part in parts) > 1:
            raise InputError("only one media part can read standard input ('-')")
        for part in parts:  # every part is admitted before the first is read
            self._admit(part.location)
        budget = Budget(self.policy)
        pending = iter(parts)
        turns = []
        for message in checked:
            content = message["content"]
            if isinstance(content, str):
                turns.append(Turn(message["role"], (content,)))
                continue
            segments: list[Segment] = []
            for part in content:
                if part["type"] == "text":
                    segments.append(part["text"])
                else:
                    part = next(pending)
                    decoded = self.segments(part, media, budget)
                    if on_media is not None:  # a file as what it turned out to be
                        on_media(part if part.kind != "file" else self._told(part, media), decoded)
                    segments.extend(decoded)
            turns.append(Turn(message["role"], tuple(segments)))
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

    def _local_holds(self, where: Location) -> claims.Holds | None:
        """What a local file (one the policy lets us read) holds, from its first KiB; None for the rest."""
        from .sniff import detect_kind

        if where.path is None:
            return None
        try:
            path = self._admit(where).path
            with open(path, "rb") as f:  # type: ignore[arg-type]
                head = f.read(1024)
        except (OSError, MmchatError):
            return None  # the read says what is wrong
        return claims.holds(detect_kind(head)[0], head)

    # -- one part --------------------------------------------------------------------

    def segments(
        self, part: MediaPart, media: MediaOptions, budget: Budget | None = None, fetched: Any = None
    ) -> list[Segment]:
        """One media part, decoded (or remembered: a file by path, size and mtime; a URL by its text).
        `fetched`: the part's bytes when the caller has already read them."""
        where = part.location
        where = self._admit(where)  # before the cache: a remembered file is still refused
        options = self._effective(part, media)
        key = _media_key(part.kind, where, options)
        found = self._cache.get(key) if key else None
        if found is None:
            found = self._decode(part.kind, where, options, media, budget or Budget(self.policy), fetched)
            if key:
                self._cache.put(key, found)
        self._digests.put(_url_key(part.url), found[1])  # under what the message says: the log asks for it so
        return found[0]

    def _told(self, part: MediaPart, media: MediaOptions) -> MediaPart:
        """A file part as the kind its content told (image when it was read anew each time: stdin, devices)."""
        key = _media_key(part.kind, part.location, self._effective(part, media))
        found = self._cache.peek(key) if key else None
        return dataclasses.replace(part, kind=found[2] if found else "image")

    def _effective(self, part: MediaPart, media: MediaOptions, kind: msgs.PartKind | None = None) -> dict[str, Any]:
        """Everything that shapes the decoded result: the part's own options over the request's
        (which keys a part may carry is messages.PART_OPTIONS, checked when it was validated).
        A file told by its content: the options for each kind it may turn out to be."""
        kind = kind or part.kind
        if kind == "file":
            return {k: self._effective(part, media, k) for k in ("image", "audio", "video")}
        if kind == "image":
            return {
                "max_side": part.options.get("max_side", media.image_max_side),
                "pages": part.location.pages or media.pdf_pages,
            }  # a PDF's
        if kind == "audio":
            start, end = parse_segment(part.options.get("start"), part.options.get("end"), "audio")
            return {"rate": self.caps.audio_sample_rate or 16000, "start": start, "end": end}
        return {**media.video_defaults(), **{k: v for k, v in part.options.items() if k in msgs.PART_OPTIONS["video"]}}

    def _decode(
        self,
        kind: msgs.PartKind,
        where: Location,
        options: dict[str, Any],
        media: MediaOptions,
        budget: Budget,
        fetched: Any = None,
    ) -> tuple[list[Segment], Digest, Kind]:
        """The part's segments, its sha256 (a local audio or video file: its path, hashed on asking), and
        the kind it was read as (a PDF's pages and a text file's text: image)
        What the bytes hold must agree with what the part and the file's name claim (claims.py)."""
        declared = None if kind == "file" else kind
        local = fetched is None and where.path is not None
        if local and (kind in ("audio", "video") or kind == "file" and self._local_holds(where) in ("audio", "video")):
            head = budget.local(where)  # long audio and video are decoded from disk, not read into memory
            found = self._judge(head, declared, kind)
            found_options = options[found] if kind == "file" else options
            if found == "video":
                return self._video(head.path, head.label, found_options), head.path, "video"
            return [self._audio(head.path, head.label, found_options)], head.path, "audio"
        if kind == "image" and local and (pixels := fresh(where.path)) is not None:  # a capture: its pixels, now
            from ..media.image import from_pixels

            return [from_pixels(pixels, where.label, options["max_side"] or None)], where.path, "image"  # type: ignore[return-value]
        source = fetched
        if source is None:
            report = self._progress
            on_bytes = (lambda done, total: report(f"downloading {short(where.text)}", done, total)) if report else None
            source = budget.read(
                where,
                stdin=self._stdin,
                progress=on_bytes,
                deadline=media.url_deadline,
                speed_limit=media.url_speed_limit,
                speed_time=media.url_speed_time,
            )
        digest = hashlib.sha256(source.data).hexdigest()
        found = self._judge(source, declared, kind)
        if kind == "file":
            options = options["image" if found in (None, "pdf", "svg", "text") else found]
        if found in ("pdf", "text"):
            return self._read_document(source, found, options), digest, "image"
        if found == "svg":
            from ..media.svg import draw_svg

            return [draw_svg(source.data, label=source.label, max_side=options["max_side"] or None)], digest, "image"
        if found == "image":
            from ..media.image import decode_image

            image = decode_image(source.data, label=source.label, max_side=options["max_side"] or None)
            return [image], digest, "image"
        if found == "audio":
            return [self._audio(source.data, source.label, options)], digest, "audio"
        return self._video(source.data, source.label, options), digest, "video"

    def _judge(self, source: Any, declared: Kind | None, kind: msgs.PartKind) -> claims.Holds | None:
        """What to read the bytes as (claims.judge), checked against the model once a file's kind is known.
        A damaged medium (bytes nothing knows) is read as what was claimed, so its decoder says what is wrong."""
        found = claims.judge(source.label, declared, claims.holds(source.kind, source.data))
        if declared is not None:
            _check_kind(source, declared)
            return declared if found in ("image", "audio", "video", None) else found
        if found in ("image", "audio", "video") and found not in self.caps.kinds:
            self.check_kind(found, source.label)
        return found

    def _read_document(self, source: Any, found: claims.Holds, options: dict[str, Any]) -> list[Segment]:
        """A PDF's pages or a text file's text."""
        from .pdf import pdf_segments, text_segments

        if found == "pdf":
            return pdf_segments(
                source.data,
                source.label,
                pages=options.get("pages"),
                vision=self.caps.vision,
                max_side=options["max_side"] or None,
                notice=self._notice,
            )
        return text_segments(source.data, source.label)

    def _audio(self, src: Any, label: str, options: dict[str, Any]) -> Audio:
        """Refused from its length when it cannot fit (before decoding), else decoded (only its part)."""
        from ..media.audio import decode_audio
        from ..media.probe import sound_seconds
        from .soundcost import check_sound

        start, end = options["start"], options["end"]
        check_sound(self.caps, lambda: sound_seconds(src), label, start, end)
        return decode_audio(src, label=label, sample_rate=options["rate"], start=start, end=end)

    def _video(self, src: Any, label: str, options: dict[str, Any]) -> list[Segment]:
        from ..engine.layout import video_segments
        from ..media.probe import sound_seconds
        from ..media.video import VideoOptions, decode_video
        from .soundcost import check_sound

        opts = VideoOptions.from_dict(options)
        rate = self.caps.audio_sample_rate if self.caps.audio and opts.audio else None
        if rate:  # a long soundtrack is refused before a frame is decoded
            check_sound(self.caps, lambda: sound_seconds(src), label, opts.start, opts.end, soundtrack=True)
        report = self._progress
        on_frame = (lambda done, total: report(f"decoding {short(label)}", done, total)) if report else None
        video = decode_video(
            src, label=label, options=opts, max_side=options.get("max_side") or None, audio_rate=rate, progress=on_frame
        )
        return video_segments(video, pairs=self.caps.frame_pairs, keep_all=bool(options.get("keep_all_frames")))

    def digest(self, url: str) -> str | None:
        """The sha256 of the bytes last read for `url` (what the conversation log keeps); None if never
        read, or not since the latest conversation."""
        return self.sha256(url, self._digests.peek(_url_key(url)))

    def read_for(self, messages: Sequence[msgs.Message]) -> dict[str, Digest | None]:
        """url -> what was read for each media part of `messages`, taken as they are resolved: a later
        request may have settled the cache by the time the answer is logged."""
        return {part.url: self._digests.peek(_url_key(part.url)) for part in media_parts(messages)}

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
        where = self._admit(locate(url))
        local = local_source(where)
        fetched = budget.read(where, stdin=self._stdin) if local is None and kind is None else None  # read once
        source = local or fetched
        part_kind: msgs.PartKind | None = kind
        if source is not None and kind is None:  # told by its content, as a file part is
            found = claims.judge(source.label, None, claims.holds(source.kind, source.data))
            kind, part_kind = (found, found) if found in ("image", "audio", "video") else ("image", "file")
        assert kind is not None
        self.check_kind(part_kind or kind, url, where)
        stored = str(source.path.resolve()) if source is not None and source.path is not None else where.text
        if where.pages:
            stored += f"#page={where.pages}"  # the pages travel with the part
        part = MediaPart(part_kind or kind, stored, {}, "attach")
        self.segments(part, media, budget, fetched)  # decoded now, reused by the turn
        return Attachment(kind, stored, url, file=part_kind == "file")


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


def _check_kind(source: Any, kind: Kind) -> None:
    """Bytes of another kind than asked for are refused, except where one holds the other:
    a video's soundtrack as audio, an animated GIF/WebP or an audio-only file as video
    (the video decoder then says what it lacks)."""
    found = source.kind
    if found is None or found == kind or (kind, found) in {("audio", "video"), ("video", "audio")}:
        return
    if kind == "video" and found == "image" and source.mime in ("image/gif", "image/webp"):
        return
    raise InputError(f"{source.label} is {with_article(found)}, not {with_article(kind)}: pass it as {found}")
