"""Media parts as the conversation log keeps them: a reference (an absolute path or a URL) and
the sha256 of the bytes mmchat read, never the bytes; and the check `--continue` makes that
each one still holds those bytes.

Inline media (data: URLs, stdin) keep only their sha256 under a placeholder reference, so
a conversation holding them cannot be continued: the log records what was asked, it is
not a copy of the user's files, and a log that swallowed every pasted image would grow
without bound.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import messages as msgs
from ..errors import InputError, SourceError
from ..inputs.part import Location
from ..media import with_article

INLINE_SOURCES = ("stdin", "inline")  # media the log cannot read again
_PLACEHOLDERS = {"-": ("(stdin)", "stdin"), "(stdin)": ("(stdin)", "stdin"), "(data: URL)": ("(data: URL)", "inline")}


@dataclasses.dataclass(frozen=True)
class MediaRecord:
    kind: str
    ref: str
    source: str  # path, url, stdin or inline
    sha256: str | None
    location: Location | None = dataclasses.field(default=None, compare=False)  # the ref parsed, when it was

    @property
    def row(self) -> tuple[str, str, str, str | None]:
        """The columns of its row in the media table."""
        return self.kind, self.ref, self.source, self.sha256


def stored_messages(messages: Sequence[msgs.Message], digests: dict[str, str | None]) -> list[dict[str, Any]]:
    """Parsed messages with every media part as its reference and sha256, never its bytes."""
    return [
        {"role": m.role, "content": m.text if m.plain else [_stored_part(p, digests) for p in m.parts]}
        for m in messages
    ]


def _stored_part(part: msgs.TextPart | msgs.MediaPart, digests: dict[str, str | None]) -> dict[str, Any]:
    if isinstance(part, msgs.TextPart):
        return part.to_openai()
    sha = digests.get(part.url)
    body = dict(part.options)
    url, where = part.url.strip(), part.location
    if url in _PLACEHOLDERS:
        ref, source = _PLACEHOLDERS[url]
    elif where.scheme == "data":
        ref, source, body = "(data: URL)", "inline", {}
    elif where.path is not None:  # a PDF's chosen pages stay with it
        pages = f"#page={where.pages}" if where.pages else ""
        ref, source = f"{where.path.resolve()}{pages}", "path"
    else:
        ref, source = url, "url"
    ptype = msgs.PART_TYPE_OF[part.kind]
    return {"type": ptype, ptype: {"url": ref, **body}, "sha256": sha, "source": source}


def as_written_now(stored: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Logged messages as today's mmchat writes them. Before file parts (issue 24), `-i notes.md` was
    logged as an image_url part that was read as text; such a part, a path whose name claims no
    medium, comes back as a file part, told by its content again, so `--continue` still sends it."""
    from ..inputs.claims import named

    def part(p: dict[str, Any]) -> dict[str, Any]:
        if (
            p.get("type") != "image_url"
            or p.get("source") != "path"
            or named(p["image_url"]["url"]) not in (None, "text")
        ):
            return p
        return {**{k: v for k, v in p.items() if k != "image_url"}, "type": "file", "file": p["image_url"]}

    return [m if isinstance(m["content"], str) else {**m, "content": [part(p) for p in m["content"]]} for m in stored]


def media_records(stored: Sequence[dict[str, Any]], parsed: msgs.Conversation | None = None) -> list[MediaRecord]:
    """The media parts of stored messages; with `parsed` (the same messages parsed), each with its location."""
    records = [
        MediaRecord(msgs.MEDIA_PART_TYPES[p["type"]], p[p["type"]]["url"], p.get("source", "url"), p.get("sha256"))
        for m in stored
        if not isinstance(m["content"], str)
        for p in m["content"]
        if p["type"] != "text"
    ]
    if parsed is None:
        return records
    return [dataclasses.replace(r, location=part.location) for r, part in zip(records, parsed.media())]


def verify_media(cid: str, media: Sequence[MediaRecord]) -> None:
    """Read every media part again and compare it with what the log says was read; one line if not."""
    from ..inputs import part as part_location
    from ..inputs.sources import read_source

    seen: set[str] = set()
    for m in media:
        if m.ref in seen:
            continue
        seen.add(m.ref)
        if m.source in INLINE_SOURCES:
            raise InputError(
                f"conversation {cid} holds {with_article(m.kind)} given inline {m.ref}: the log "
                "keeps references, not bytes, so it cannot be sent again; start a new conversation "
                "with the file as a path"
            )
        if m.sha256 is None:
            continue
        where = m.location or part_location.locate(m.ref)  # parsed with the conversation, once
        if m.source == "path":
            digest = _file_digest(where.path or Path(m.ref), cid)  # without a PDF's #page=
        else:
            digest = hashlib.sha256(read_source(where).data).hexdigest()
        if digest != m.sha256:
            raise SourceError(
                f"{m.ref} changed since conversation {cid} used it (its sha256 differs): "
                "put the original back, or start a new conversation"
            )


def _file_digest(path: Path, cid: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise SourceError(
            f"{path} is gone, and conversation {cid} needs it: put it back, or start a new conversation"
        ) from None
    except OSError as e:
        raise SourceError(f"cannot read {path} for conversation {cid} ({e.strerror or e})") from None
