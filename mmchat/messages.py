"""Chat messages: OpenAI-style part builders, and the one parse into types (pure: no I/O).

What users write is OpenAI's dicts, exactly what `--json` and `/save` write:
``{"role": "user", "content": "text" | [part, ...]}``. `parse_conversation` checks them once
(every part type, key and option; each media URL located) into a frozen `Conversation` of
`Message(role, parts)` with `TextPart` and `MediaPart(kind, location, options)`, which
everything after it takes; `as_dicts()` writes dicts again at the edges. The order of parts is
the order the model sees them in; nothing here reorders, merges or drops a part.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .errors import InputError
from .inputs import part as part_location
from .inputs.part import Location

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

#: a media part's kind as the message gives it: a medium, or a file told by its content
PartKind = Literal["image", "audio", "video", "file"]

ROLES = ("system", "user", "assistant")

#: part type -> the media kind it carries (text parts carry none); a `file` part's kind is told by its
#: content (inputs/claims.py): an image, audio, video, PDF or text file (`-i`, `/attach`, batch files)
MEDIA_PART_TYPES: dict[str, PartKind] = {
    "image_url": "image",
    "audio_url": "audio",
    "input_audio": "audio",
    "video_url": "video",
    "file": "file",
}
PART_TYPES = ("text", *MEDIA_PART_TYPES)
#: the part type mmchat writes for each kind (the log, /save)
PART_TYPE_OF: dict[PartKind, str] = {"image": "image_url", "audio": "audio_url", "video": "video_url", "file": "file"}
#: the short part types some clients write (`{"type": "image", "image": {"url": ...}}`) -> OpenAI's
SHORT_PART_TYPES = {"image": "image_url", "audio": "audio_url", "video": "video_url"}

#: the options a media part may carry beside its url, one list per kind (a part's own keys override
#: the request's MediaOptions); `detail` is OpenAI's image hint, accepted and left to the model's encoder
PART_OPTIONS: dict[PartKind, tuple[str, ...]] = {
    "image": ("max_side", "detail"),
    "audio": ("start", "end"),
    "video": ("fps", "max_frames", "start", "end", "audio", "max_side", "keep_all_frames"),
    # a file's options apply to the kind it turns out to be; `filename` is OpenAI's name for file_data
    "file": ("max_side", "detail", "fps", "max_frames", "start", "end", "audio", "keep_all_frames", "filename"),
}

#: OpenAI's `input_audio.format` values and the mime type of each
AUDIO_FORMATS = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "webm": "audio/webm",
    "pcm16": "audio/L16",
}

MessageDict = dict[str, Any]  # a message as OpenAI writes it
Part = dict[str, Any]  # a part as OpenAI writes it


# -- builders ---------------------------------------------------------------------------


def text_part(text: str) -> Part:
    return {"type": "text", "text": text}


def image_part(url: str, **options: Any) -> Part:
    """An image by URL: a path, file://, http(s)://, data: or '-' for stdin."""
    return {"type": "image_url", "image_url": {"url": url, **options}}


def audio_part(url: str, **options: Any) -> Part:
    return {"type": "audio_url", "audio_url": {"url": url, **options}}


def video_part(url: str, **options: Any) -> Part:
    """A video; options (for example fps, max_frames) apply to this video only."""
    return {"type": "video_url", "video_url": {"url": url, **options}}


def input_audio_part(data: bytes | str, format: str) -> Part:
    """OpenAI's inline audio part: base64 data plus its container format."""
    if isinstance(data, bytes):
        data = base64.b64encode(data).decode("ascii")
    return {"type": "input_audio", "input_audio": {"data": data, "format": format}}


def file_part(url: str, **options: Any) -> Part:
    """A file whose kind its content tells (an image, audio, video, PDF or text file), as `-i` gives it."""
    return {"type": "file", "file": {"url": url, **options}}


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def user_message(prompt: str | None, media: Iterable[Part] = ()) -> MessageDict:
    """A user turn: media first in the order given, then the prompt text (unless the prompt
    places them with [[N]] placeholders)."""
    parts = place_media(prompt, list(media))
    if not parts:
        raise InputError("empty message: give a prompt or at least one image, audio or video")
    if len(parts) == 1 and isinstance(parts[0], dict) and parts[0]["type"] == "text":
        return {"role": "user", "content": prompt}
    return {"role": "user", "content": parts}


def user_turn(prompt: str | None, media: Sequence[MediaPart] = ()) -> Message:
    """`user_message` of media parsed already (the CLI's flags): a Message, nothing parsed again."""
    content = user_message(prompt, media)["content"]  # type: ignore[arg-type]
    if isinstance(content, str):
        return Message("user", (TextPart(content),), plain=True)
    return Message("user", tuple(p if isinstance(p, MediaPart) else TextPart(p["text"]) for p in content))


PLACEHOLDER = re.compile(r"\[\[(\d+)\]\]")


def place_media(prompt: str | None, media: Sequence[Part]) -> list[Part]:
    """Parts for a prompt that may place media itself with numbered placeholders.

    "What changed between [[1]] and [[2]]?" puts media 1 and 2 (numbered in the order they
    were given) where they stand; media no placeholder names go first, in order.
    """
    text = prompt or ""
    used: set[int] = set()
    pieces: list[Part] = []
    pos = 0
    for match in PLACEHOLDER.finditer(text):
        n = int(match.group(1))
        if not 1 <= n <= len(media):
            raise InputError(
                f"the prompt names [[{n}]] but {len(media)} media file(s) were given: number them 1..{len(media)} in flag order"
            )
        if text[pos : match.start()]:
            pieces.append(text_part(text[pos : match.start()]))
        pieces.append(media[n - 1])
        used.add(n)
        pos = match.end()
    if text[pos:]:
        pieces.append(text_part(text[pos:]))
    return [m for i, m in enumerate(media, 1) if i not in used] + pieces


def system_message(text: str) -> MessageDict:
    return {"role": "system", "content": text}


def assistant_message(text: str) -> MessageDict:
    return {"role": "assistant", "content": text}


# -- in-memory media, for people who script in Python ------------------------------------


def image_from_pil(image: PILImage, format: str = "PNG") -> Part:
    """A PIL image as an image_url part (PNG keeps the pixels exactly)."""
    buf = io.BytesIO()
    image.save(buf, format=format)
    return image_part(data_url(buf.getvalue(), f"image/{format.lower()}"))


def image_from_bytes(data: bytes, mime: str = "application/octet-stream") -> Part:
    """Encoded image bytes (PNG, JPEG, HEIC...) as an image_url part; the kind is detected later."""
    return image_part(data_url(data, mime))


def audio_from_array(samples: np.ndarray, sample_rate: int) -> Part:
    """A numpy signal ((n,), (n, channels) or (channels, n); int or float) as a WAV part."""
    import soundfile

    from .media.audio import audio_from_array as to_audio

    audio = to_audio(samples, sample_rate)  # mono float32: what the model gets anyway
    buf = io.BytesIO()
    soundfile.write(buf, audio.samples, audio.sample_rate, format="WAV", subtype="FLOAT")
    return input_audio_part(buf.getvalue(), "wav")


# -- the parsed conversation --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TextPart:
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputError("a text part needs a string 'text'")

    def to_openai(self) -> Part:
        return {"type": "text", "text": self.text}


@dataclasses.dataclass(frozen=True)
class MediaPart:
    """One media part: its kind ("file": told by its content, inputs/claims.py), where its bytes are
    (the URL parsed once), and its own options (PART_OPTIONS[kind]), which override the request's."""

    kind: PartKind
    location: Location
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    audio_format: str | None = None  # OpenAI's inline audio (input_audio): written back as one
    where: str = dataclasses.field(default="part", compare=False)  # messages[i].content[j], attach, ...

    def __post_init__(self) -> None:
        if self.kind not in PART_OPTIONS or not isinstance(self.location, Location):
            raise InputError(f"a media part needs a kind ({', '.join(PART_OPTIONS)}) and a Location")
        unknown = sorted(k for k in self.options if k not in PART_OPTIONS[self.kind])
        if unknown:
            raise InputError(f"unknown {PART_TYPE_OF[self.kind]} option {unknown[0]!r}")
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))

    @property
    def url(self) -> str:
        """The URL as the message gives it (the log keeps the digest of its bytes under it)."""
        return self.location.url

    def to_openai(self) -> Part:
        if self.audio_format is not None:
            data = self.url.split(",", 1)[1]
            return {"type": "input_audio", "input_audio": {"data": data, "format": self.audio_format}}
        ptype = PART_TYPE_OF[self.kind]
        return {"type": ptype, ptype: {"url": self.url, **self.options}}


@dataclasses.dataclass(frozen=True)
class Message:
    """A message parsed: its role and parts in order; `plain`: its content was a string (written back so)."""

    role: str
    parts: tuple[TextPart | MediaPart, ...]
    plain: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        if self.role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not all(isinstance(p, (TextPart, MediaPart)) for p in self.parts):
            raise InputError("a message's parts are TextPart and MediaPart: parse_conversation makes them")
        if self.role != "user" and any(isinstance(p, MediaPart) for p in self.parts):
            raise InputError(f"only user messages can hold media, this one is {self.role!r}")

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def to_openai(self) -> dict[str, Any]:
        if self.plain:
            return {"role": self.role, "content": self.text}
        return {"role": self.role, "content": [p.to_openai() for p in self.parts]}


class Conversation(tuple[Message, ...]):
    """Messages parsed once (`parse_conversation`): immutable, so what was checked is what is sent."""

    def __new__(cls, messages: Iterable[Message] = ()) -> Conversation:
        out = super().__new__(cls, messages)
        if not all(isinstance(m, Message) for m in out):
            raise InputError("a Conversation holds Messages: parse_conversation makes one from OpenAI dicts")
        return out

    @functools.cached_property
    def _media(self) -> list[MediaPart]:
        return [part for message in self for part in message.parts if isinstance(part, MediaPart)]

    def media(self) -> list[MediaPart]:
        """Every media part, in order (each `where` is its place in the messages it was parsed from)."""
        return list(self._media)

    def placed(self) -> list[MediaPart]:
        """`media()`, each part's `where` its place in this conversation (a new part where it moved)."""
        return [
            part if part.where == (where := f"messages[{i}].content[{j}]") else dataclasses.replace(part, where=where)
            for i, message in enumerate(self)
            for j, part in enumerate(message.parts)
            if isinstance(part, MediaPart)
        ]

    def as_dicts(self) -> list[dict[str, Any]]:
        """OpenAI's message dicts again: for the edges (--json, /save, the log, a server's request)."""
        return [m.to_openai() for m in self]


def _fail(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what}")


def parse_conversation(raw: Any) -> Conversation:
    """OpenAI-style messages checked once, every part type, key and option, into frozen types; errors
    say which message and part. A Conversation is returned as it is; Messages in a list are kept."""
    if isinstance(raw, Conversation):
        return raw
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise InputError("messages must be a list of {'role': ..., 'content': ...} objects")
    if not raw:
        raise InputError("messages is empty: give at least one user message")
    return Conversation(m if isinstance(m, Message) else parse_message(m, f"messages[{i}]") for i, m in enumerate(raw))


def parse_message(message: Any, where: str = "message") -> Message:
    if not isinstance(message, Mapping):
        raise _fail(where, f"a message must be an object, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise _fail(where, f"role must be one of {', '.join(ROLES)}, got {role!r}")
    content = message.get("content")
    if content is None:
        content = ""
    if isinstance(content, str):
        return Message(role, (TextPart(content),), plain=True)
    if not isinstance(content, Sequence):
        raise _fail(where, "content must be a string or a list of parts")
    parts = tuple(parse_part(p, f"{where}.content[{j}]") for j, p in enumerate(content))
    if role != "user" and any(isinstance(p, MediaPart) for p in parts):
        raise _fail(where, f"only user messages can hold media, this one is {role!r}")
    return Message(role, parts)


def parse_part(part: Any, where: str = "part") -> TextPart | MediaPart:
    """One content part checked and parsed (string URLs and short part types accepted); its URL located."""
    if not isinstance(part, Mapping):
        raise _fail(where, f"a content part must be an object, got {type(part).__name__}")
    ptype = part.get("type")
    if ptype in SHORT_PART_TYPES and ptype in part:
        ptype = SHORT_PART_TYPES[ptype]
        part = {"type": ptype, ptype: part[part["type"]]}
    if ptype not in PART_TYPES:
        raise _fail(where, f"unknown part type {ptype!r}; expected one of {', '.join(PART_TYPES)}")
    if ptype == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise _fail(where, "a text part needs a string 'text'")
        return TextPart(text)
    body = part.get(ptype)
    if ptype == "input_audio":
        if not isinstance(body, Mapping) or not isinstance(body.get("data"), str):
            raise _fail(where, "input_audio needs {'data': base64 string, 'format': 'wav'|'mp3'|...}")
        fmt = body.get("format")
        if fmt not in AUDIO_FORMATS:
            raise _fail(where, f"input_audio format {fmt!r} is not one of {', '.join(AUDIO_FORMATS)}")
        url = f"data:{AUDIO_FORMATS[fmt]};base64,{body['data']}"
        return MediaPart("audio", part_location.locate(url), {}, fmt, where)
    if isinstance(body, str):  # {"image_url": "https://..."}: accepted shorthand
        body = {"url": body}
    if ptype == "file" and isinstance(body, Mapping) and "url" not in body:
        body = _openai_file(body, where)
    if not isinstance(body, Mapping) or not isinstance(body.get("url"), str) or not body["url"]:
        raise _fail(where, f"{ptype} needs {{'url': ...}} with a path, file://, http(s)://, data: URL or '-'")
    kind = MEDIA_PART_TYPES[ptype]
    known = PART_OPTIONS[kind]
    unknown = sorted(k for k in body if k != "url" and k not in known)
    if unknown:
        raise _fail(where, f"unknown {ptype} option {unknown[0]!r}; known: url, {', '.join(known)}")
    options = {k: v for k, v in body.items() if k != "url"}
    return MediaPart(kind, part_location.locate(body["url"]), options, None, where)


def _openai_file(body: Mapping[str, Any], where: str) -> dict[str, Any]:
    """OpenAI's file part ({"file_data": data URL or base64, "filename": ...}) as mmchat's ({"url": ...})."""
    if "file_id" in body:
        raise _fail(where, "a file part's file_id names a file uploaded to OpenAI: send its bytes as file_data")
    data = body.get("file_data")
    if not isinstance(data, str) or not data:
        raise _fail(where, "file needs {'url': ...} or OpenAI's {'file_data': data URL or base64, 'filename': ...}")
    url = data if data[:5].lower() == "data:" else f"data:application/octet-stream;base64,{data}"
    return {"url": url, **{k: v for k, v in body.items() if k != "file_data"}}


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """The messages checked and written back in canonical form (OpenAI dicts): parse_conversation's."""
    return parse_conversation(messages).as_dicts()
