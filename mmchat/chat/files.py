"""Conversations as files: /save writes OpenAI-style JSON atomically, /load reads it back.

Media are embedded as data: URLs so a file stands alone, or kept as paths with --ref. An
answer cut short by Ctrl-C is marked in an `mmchat` block; other tools see plain messages.
This is one of the REPL's edges: the conversation is parsed once when a file is read, and
written as OpenAI's dicts only here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .. import messages as msgs
from ..atomic import write_atomic
from ..errors import InputError, MmchatError
from .conversation import Conversation, kept

SAVE_VERSION = 1


def to_json(conv: Conversation, *, embed: bool = True) -> dict[str, Any]:
    """{"messages": [...]} as OpenAI takes them; media as data: URLs unless embed=False."""
    out = [msgs.system_message(conv.system)] if conv.system else []
    cut = []
    for message in conv.messages:
        if message.interrupted:
            cut.append(len(out))
        if embed and not message.plain:
            out.append({"role": message.role, "content": [inline(p) for p in message.parts]})
        else:
            out.append(message.to_openai())
    data: dict[str, Any] = {"messages": out}
    if cut:
        data["mmchat"] = {"version": SAVE_VERSION, "interrupted": cut}
    return data


def from_json(data: Any) -> Conversation:
    """A saved conversation: {"messages": [...]} or a bare message list, parsed once."""
    raw = data.get("messages") if isinstance(data, dict) else data
    if raw is None:
        raise InputError("no 'messages' list in the file: save one with /save")
    parsed = [kept(m) for m in msgs.parse_conversation(raw)]
    meta = data.get("mmchat", {}) if isinstance(data, dict) else {}
    for i in meta.get("interrupted", []) if isinstance(meta, dict) else []:
        if isinstance(i, int) and 0 <= i < len(parsed) and parsed[i].role == "assistant":
            parsed[i] = dataclasses.replace(parsed[i], interrupted=True)
    system = None
    if parsed[0].role == "system":
        system = parsed.pop(0).text
    return Conversation(system, parsed)


def save(conv: Conversation, path: str | Path, *, ref: bool = False) -> Path:
    """Write the conversation as JSON atomically: the old file survives any failure."""
    target = Path(path).expanduser()
    text = json.dumps(to_json(conv, embed=not ref), ensure_ascii=False, indent=1) + "\n"
    try:
        write_atomic(target, text)
    except OSError as e:
        raise InputError(f"cannot save to {target} ({e.strerror or e}): choose a writable path") from None
    return target


def load(path: str | Path) -> Conversation:
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
        return from_json(data)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def inline(part: msgs.TextPart | msgs.MediaPart) -> msgs.Part:
    """A part as OpenAI's dict, a media part's bytes inlined as a data: URL, so a saved file stands alone."""
    if not isinstance(part, msgs.MediaPart) or part.location.scheme == "data" or part.audio_format is not None:
        return part.to_openai()
    from ..inputs.sources import read_source

    try:
        source = read_source(part.location)
    except MmchatError as e:
        raise type(e)(f"cannot embed {part.url} ({e}): save with --ref to keep it as a path") from None
    written = part.to_openai()
    ptype = written["type"]
    return {
        "type": ptype,
        ptype: {**written[ptype], "url": msgs.data_url(source.data, source.mime or "application/octet-stream")},
    }
