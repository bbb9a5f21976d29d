"""One media part's bytes -> segments: read (sources.py, within a Budget), checked against what the
part and the file's name claim (claims.py, sniff.py), decoded (media/) with the request's options,
and a video laid out as the model will see it (engine/layout.py). The resolver (resolver.py) keeps
the results for a follow-up; this module keeps nothing.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, BinaryIO

from .. import messages as msgs
from ..engine.base import Capabilities, Progress, Segment
from ..errors import InputError, UnsupportedMedia
from ..media import Audio, Kind, with_article
from ..options import MediaOptions
from ..values import parse_segment
from . import claims
from .capture import fresh
from .part import Location, short
from .policy import Budget
from .sources import Source

Digest = str | os.PathLike  # the sha256 of the bytes read, or a local file's path, hashed when asked
#: what decoding a part gives: its segments, its digest, and the kind it was read as (a PDF's pages: image)
Decoded = tuple[list[Segment], Digest, Kind]


def refuse_kind(caps: Capabilities, kind: str, url: str) -> None:
    """UnsupportedMedia when the model cannot take `kind` (image, audio or video)."""
    if kind not in caps.kinds:
        what = "images" if kind == "image" else kind
        raise UnsupportedMedia(
            f"{caps.model_name} takes {caps.describe()}, not {what} ({short(url)}): "
            f"use a model that takes {what} (a local model's mmproj decides)"
        )


def head_holds(where: Location) -> claims.Holds | None:
    """What a local file holds, from its first KiB (the caller has admitted it); None for the rest."""
    from .sniff import detect_kind

    if where.path is None:
        return None
    try:
        with open(where.path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return None  # the read says what is wrong
    return claims.holds(detect_kind(head)[0], head)


def effective(
    caps: Capabilities, part: msgs.MediaPart, media: MediaOptions, kind: msgs.PartKind | None = None
) -> dict[str, Any]:
    """Everything that shapes the decoded result: the part's own options over the request's (which keys
    a part may carry was checked when it was parsed). A file told by its content: the options for each
    kind it may turn out to be."""
    kind = kind or part.kind
    if kind == "file":
        return {k: effective(caps, part, media, k) for k in ("image", "audio", "video")}
    if kind == "image":
        return {
            "max_side": part.options.get("max_side", media.image_max_side),
            "pages": part.location.pages or media.pdf_pages,
        }
    if kind == "audio":
        start, end = parse_segment(part.options.get("start"), part.options.get("end"), "audio")
        return {"rate": caps.audio_sample_rate or 16000, "start": start, "end": end}
    return {**media.video_defaults(), **{k: v for k, v in part.options.items() if k in msgs.PART_OPTIONS["video"]}}


class Decoder:
    """Reads and decodes parts for one model (its capabilities decide what it may be given)."""

    def __init__(self, caps: Capabilities, stdin: BinaryIO | None = None, progress: Progress | None = None):
        self.caps, self._stdin, self._progress = caps, stdin, progress

    def read(self, where: Location, budget: Budget, media: MediaOptions | None = None) -> Source:
        """The bytes of a part that is not decoded from disk (within the budget and the URL limits)."""
        limits = {}
        if media is not None:
            limits = {
                "deadline": media.url_deadline,
                "speed_limit": media.url_speed_limit,
                "speed_time": media.url_speed_time,
            }
        return budget.read(where, stdin=self._stdin, progress=self._progress, **limits)

    def decode(
        self,
        kind: msgs.PartKind,
        where: Location,
        options: dict[str, Any],
        media: MediaOptions,
        budget: Budget,
        fetched: Source | None = None,
    ) -> Decoded:
        """The part's segments, its sha256 (a local audio or video file: its path, hashed on asking), and the
        kind it was read as. What the bytes hold must agree with what the part and the file's name claim."""
        declared = None if kind == "file" else kind
        local = fetched is None and where.path is not None
        if local and (kind in ("audio", "video") or kind == "file" and head_holds(where) in ("audio", "video")):
            head = budget.local(where)  # long audio and video are decoded from disk, not read into memory
            found = self._judge(head, declared, kind)
            found_options = options[found] if kind == "file" else options
            if found == "video":
                return self._video(head.path, head.label, found_options), head.path, "video"
            return [self._audio(head.path, head.label, found_options)], head.path, "audio"
        if kind == "image" and local and (pixels := fresh(where.path)) is not None:  # a capture: its pixels, now
            from ..media.image import from_pixels

            return [from_pixels(pixels, where.label, options["max_side"] or None)], where.path, "image"  # type: ignore[return-value]
        source = fetched if fetched is not None else self.read(where, budget, media)
        digest = hashlib.sha256(source.data).hexdigest()
        found = self._judge(source, declared, kind)
        if kind == "file":
            options = options["image" if found in (None, "pdf", "svg", "text") else found]
        read_as: Kind = (
            "image" if found in ("pdf", "text", "svg", "image") else "audio" if found == "audio" else "video"
        )
        return self._bytes(source, found, options), digest, read_as

    def _bytes(self, source: Source, found: claims.Holds | None, options: dict[str, Any]) -> list[Segment]:
        """Bytes in memory, decoded as what they were judged to be."""
        if found in ("pdf", "text"):
            return self._read_document(source, found, options)
        if found == "svg":
            from ..media.svg import draw_svg

            return [draw_svg(source.data, label=source.label, max_side=options["max_side"] or None)]
        if found == "image":
            from ..media.image import decode_image

            return [decode_image(source.data, label=source.label, max_side=options["max_side"] or None)]
        if found == "audio":
            return [self._audio(source.data, source.label, options)]
        return self._video(source.data, source.label, options)

    def _judge(self, source: Source, declared: Kind | None, kind: msgs.PartKind) -> claims.Holds | None:
        """What to read the bytes as (claims.judge), checked against the model once a file's kind is known.
        A damaged medium (bytes nothing knows) is read as what was claimed, so its decoder says what is wrong."""
        found = claims.judge(source.label, declared, claims.holds(source.kind, source.data))
        if declared is not None:
            _check_kind(source, declared)
            return declared if found in ("image", "audio", "video", None) else found
        if found in ("image", "audio", "video"):
            refuse_kind(self.caps, found, source.label)
        return found

    def _read_document(self, source: Source, found: claims.Holds, options: dict[str, Any]) -> list[Segment]:
        """A PDF's pages or a text file's text."""
        from .pdf import pdf_segments, text_segments

        if found == "pdf":
            pages, side = options.get("pages"), options["max_side"] or None
            return pdf_segments(source.data, source.label, pages=pages, vision=self.caps.vision, max_side=side)
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


def _check_kind(source: Source, kind: Kind) -> None:
    """Bytes of another kind than asked for are refused, except where one holds the other:
    a video's soundtrack as audio, an animated GIF/WebP or an audio-only file as video
    (the video decoder then says what it lacks)."""
    found = source.kind
    if found is None or found == kind or (kind, found) in {("audio", "video"), ("video", "audio")}:
        return
    if kind == "video" and found == "image" and source.mime in ("image/gif", "image/webp"):
        return
    raise InputError(f"{source.label} is {with_article(found)}, not {with_article(kind)}: pass it as {found}")
