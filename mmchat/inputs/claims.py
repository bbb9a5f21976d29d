"""What a file claims to be against what its bytes hold: the one rule for every entry point.

A part can claim a kind twice: the user declares it (`--image`, an `image_url` part, `/image`), and
its name claims one (`photo.jpg`, `talk.mp3`). Its bytes say what it holds (sniff.py). Where a claim
and the bytes disagree, the part is refused in one line naming the file, what it claims and what it
holds, so a broken photo is never sent to the model as text. A file becomes a text part only when
nothing claims a medium for it: a `file` part (`-i`, `/attach`, a batch file) whose name says text
or names no kind. A PDF given as an image is its pages, drawn (documented since PDFs came); an SVG
given or named as an image is drawn (svg.py). Media of another kind than the name says are taken
by their bytes (a PNG saved as song.mp3 is an image), as they always were: the bytes decode.
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from ..errors import InputError, UnsupportedMedia
from ..media import Kind, with_article
from ..messages import PartKind
from .part import Location
from .sniff import decode_text

#: what bytes can hold, beside the media kinds
Holds = Literal["image", "audio", "video", "pdf", "svg", "text"]

#: names that say text where mimetypes does not (source code, configuration, notes)
TEXT_SUFFIXES = frozenset(
    ".txt .text .md .markdown .rst .adoc .org .tex .csv .tsv .json .jsonl .ndjson .xml .html .htm .css .yaml .yml "
    ".toml .ini .cfg .conf .env .log .py .pyi .ipynb .js .mjs .cjs .ts .tsx .jsx .vue .svelte .rs .go .c .h .cc .cpp "
    ".hpp .cxx .hh .java .kt .kts .scala .swift .m .mm .rb .php .pl .pm .lua .r .jl .sh .bash .zsh .fish .ps1 .bat "
    ".cmd .sql .graphql .proto .cmake .mk .gradle .dart .zig .nim .hs .ml .mli .ex .exs .erl .clj .el .vim .diff "
    ".patch .srt .vtt .sub .bib .gitignore .dockerfile".split()
)


def named(label: str) -> Holds | None:
    """What a file's name (a path, or a URL's path) or a data: URL's type says it is; None for no
    extension or one that says nothing."""
    if label[:5].lower() == "data:":
        mime = label[5:].split(",", 1)[0].split(";", 1)[0].strip().lower()
    else:
        path = urlsplit(label).path if "://" in label else label
        suffix = PurePosixPath(path.replace("\\", "/")).suffix.lower()
        if not suffix:
            return None
        if suffix in TEXT_SUFFIXES:
            return "text"
        mime = mimetypes.types_map.get(suffix) or mimetypes.guess_type(f"x{suffix}", strict=False)[0] or ""
    if mime == "image/svg+xml":
        return "svg"
    if mime == "application/pdf":
        return "pdf"
    top = mime.split("/")[0]
    if top in ("image", "audio", "video"):
        return top  # type: ignore[return-value]
    return "text" if top == "text" else None


def holds(kind: Kind | None, head: bytes) -> Holds | None:
    """What bytes hold: the media kind sniffed from them, else a PDF, an SVG or text; None for none of these."""
    if kind is not None:
        return kind
    if b"%PDF-" in head[:1024]:
        return "pdf"
    text = decode_text(head, final=False)
    if text is None:
        return None
    return "svg" if "<svg" in text[:4096].lower() else "text"


def judge(label: str, declared: Kind | None, found: Holds | None) -> Holds | None:
    """What to read a part as: its bytes' kind when the claims allow it (bytes nothing knows: the medium
    the name claims, None for a declared part, left to the decoder of what is claimed); else InputError
    naming the file, the claim and the bytes. `declared` is None for a `file` part, told by its content."""
    name = named(label)
    if found in ("image", "audio", "video"):
        return found  # media: their bytes decide (resolver._check_kind for a declared kind)
    if found is None:
        if declared is None and _media(name) is None:
            raise UnsupportedMedia(
                f"{label} is not an image, audio, video, PDF or text file mmchat knows: check the file, "
                "or force a kind with --image, --audio or --video (/image, /audio or /video in chat)"
            )
        return _media(name)  # a damaged medium: the claimed kind's decoder says what is wrong (None: the declared)
    if found == "svg":
        if declared in (None, "image") and name in (None, "svg", "image"):
            return "svg"  # drawn
        if declared is None and name == "text":
            return "text"  # a web page or XML that holds a drawing is read as the text it is
    elif found == "pdf":
        if declared in (None, "image") and name in (None, "pdf"):
            return "pdf"
    elif declared is None and name in (None, "text"):
        return "text"
    raise InputError(_mismatch(label, declared, name, found))


def _media(name: Holds | None) -> Kind | None:
    return name if name in ("image", "audio", "video") else None  # type: ignore[return-value]


_NOT_MEDIA = {"pdf": "a PDF", "svg": "an SVG drawing", "text": "text"}  # what a name claims or bytes hold


def _mismatch(label: str, declared: Kind | None, name: Holds | None, found: Holds) -> str:
    held = _NOT_MEDIA.get(found, with_article(found))
    if declared is not None:
        claim = f"given as {with_article(declared)}"
        if name is not None and _media(name) == declared:
            claim = f"named and given as {with_article(declared)}"
    else:
        claim = f"named as {_NOT_MEDIA.get(name or '', with_article(name or 'file'))}"
    if found == "text":
        advice = "check the file (a download that saved an error page?), or give a text file with -i to send its text"
    elif found == "pdf":
        advice = "give it with -i (a PDF is read as its pages) or rename it .pdf"
    else:
        advice = "check the file, or give it with -i as what it is"
    return f"{label} is {claim} but holds {held}: {advice}"


def told(url: str | Location) -> PartKind:
    """The part kind for a file given without one (`-i`, a batch file, a capture): a local file's
    medium from its head (its claims checked now, one line if they disagree), else a `file` part
    that the resolver reads by its content (a PDF or text file, or bytes that are not here yet)."""
    from . import part as part_location
    from .sniff import detect_kind

    where = url if isinstance(url, Location) else part_location.locate(url)
    if where.scheme == "data":  # its type is its name
        found = named(where.text)
        return found if found in ("image", "audio", "video") else "file"  # type: ignore[return-value]
    if where.path is None:
        return "file"
    try:
        with open(where.path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return "file"  # the read says what is wrong
    if not head:
        return "file"  # the read says it is empty
    found = judge(where.label, None, holds(detect_kind(head)[0], head))
    if found == "svg":
        return "image"  # drawn
    return found if found in ("image", "audio", "video") else "file"  # type: ignore[return-value]
