"""Conversations as files: /save writes OpenAI-style JSON atomically, /load reads it back.

Media are embedded as data: URLs so a file stands alone, or kept as paths with --ref. An
answer cut short by Ctrl-C is marked in an `mmchat` block; other tools see plain messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import messages as msgs
from ..atomic import write_atomic
from ..errors import InputError, MmchatError
from .conversation import Conversation, text_of

SAVE_VERSION = 1


def to_json(conv: Conversation, *, embed: bool = True) -> dict[str, Any]:
    """{"messages": [...]} as OpenAI takes them; media as data: URLs unless embed=False."""
    out = [msgs.system_message(conv.system)] if conv.system else []
    cut = []
    for message in conv.messages:
        content = message["content"]
        if embed and not isinstance(content, str):
            content = [inline(p) for p in content]
        if message.get("interrupted"):
            cut.append(len(out))
        out.append({"role": message["role"], "content": content})
    data: dict[str, Any] = {"messages": out}
    if cut:
        data["mmchat"] = {"version": SAVE_VERSION, "interrupted": cut}
    return data


def from_json(data: Any) -> Conversation:
    """A saved conversation: {"messages": [...]} or a bare message list."""
    raw = data.get("messages") if isinstance(data, dict) else data
    if raw is None:
        raise InputError("no 'messages' list in the file: save one with /save")
    checked = msgs.parse_conversation(raw).as_dicts()  # checked once; the REPL keeps OpenAI's dicts
    meta = data.get("mmchat", {}) if isinstance(data, dict) else {}
    for i in meta.get("interrupted", []) if isinstance(meta, dict) else []:
        if isinstance(i, int) and 0 <= i < len(checked) and checked[i]["role"] == "assistant":
            checked[i]["interrupted"] = True
    system = None
    if checked[0]["role"] == "system":
        system = text_of(checked.pop(0))
    return Conversation(system, checked)


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


def inline(part: msgs.Part) -> msgs.Part:
    """A media part with its bytes inlined as a data: URL, so a saved file stands alone."""
    found = msgs.parse_part(part)
    if not isinstance(found, msgs.MediaPart) or found.location.scheme == "data" or part["type"] == "input_audio":
        return part
    from ..inputs.sources import read_source

    try:
        source = read_source(found.location)
    except MmchatError as e:
        raise type(e)(f"cannot embed {found.url} ({e}): save with --ref to keep it as a path") from None
    body = {**part[part["type"]], "url": msgs.data_url(source.data, source.mime or "application/octet-stream")}
    return {"type": part["type"], part["type"]: body}
