"""`mmchat logs`: the logged conversations, newest first, or one of them; --off/--on switch logging."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from .. import config
from ..env import Environment, current
from ..errors import InputError
from .app import app, guarded

Count = Annotated[int, typer.Option("--count", "-n", min=0, help="How many conversations (0: all).")]
Json = Annotated[bool, typer.Option("--json", help="Print the conversations as JSON, turns and media included.")]
Query = Annotated[Optional[str], typer.Option("--query", "-q", help="Only conversations whose messages or answers contain this text.")]
Cid = Annotated[Optional[str], typer.Option("--cid", help="Show this conversation (its id or first characters).")]
Off = Annotated[bool, typer.Option("--off", help="Stop logging ask and chat (--log still logs one).")]
On = Annotated[bool, typer.Option("--on", help="Log ask and chat again.")]
PathFlag = Annotated[bool, typer.Option("--path", help="Print where the log is and exit.")]


@app.command("logs")
@guarded
def logs_command(count: Count = 5, json_output: Json = False, query: Query = None, cid: Cid = None,
                 off: Off = False, on: On = False, path: PathFlag = False) -> None:
    """List the logged conversations, newest first, or show one; switch logging off and on.

    Every ask and chat turn is logged in MMCHAT_HOME/logs.db: the messages (media as their
    path or URL and sha256, never the bytes), the answer, usage and timings.

    Examples:

      mmchat logs -n 3

      mmchat logs --cid 3f9a --json

      mmchat ask --continue "And the colours?"
    """
    from .. import logs

    env = current()
    if off and on:
        raise InputError("--off and --on contradict each other: give one")
    if off or on:
        _switch(env, on)
        return
    if path:
        print(logs.log_path(), file=env.stdout)
        return
    store = logs.LogStore.open(warn=env.warn)
    found = store.conversations(limit=count or None, query=query, cid=cid) if store.path.exists() else []
    if json_output:
        print(json.dumps(found, ensure_ascii=False, indent=1), file=env.stdout)
        return
    if not found:
        env.notice("no logged conversations" + (f" contain {query!r}" if query else ""))
    if logs.switched_off():
        env.notice("logging is off: `mmchat logs --on` turns it back on")
    for i, conversation in enumerate(found):
        print(("\n" if i else "") + _format(conversation), file=env.stdout, end="")


def _switch(env: Environment, on: bool) -> None:
    from .. import logs

    marker = config.user_dir() / logs.OFF_MARKER
    if on:
        marker.unlink(missing_ok=True)
        if logs.switched_off():
            env.warn(f"config.toml still says log = false: {config.config_file()}")
        env.notice("logging is on")
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    env.notice("logging is off: `mmchat logs --on` turns it back on")


def _format(conversation: dict[str, Any]) -> str:
    """One conversation as a person reads it: a header, then each turn's prompt, media and answer."""
    from ..logmedia import media_records
    from ..logs import prompt_of

    turns = conversation["turns"]
    lines = [f"conversation {conversation['id']} · {conversation['model']} · {len(turns)} "
             f"turn{'s' * (len(turns) != 1)} · {conversation['updated'][:19].replace('T', ' ')} UTC"]
    for turn in turns:
        user = [m for m in turn["messages"] if m["role"] == "user"]
        prompt = prompt_of(user)
        media = "".join(f"\n     {m.kind}: {m.ref}" + (f" (sha256 {m.sha256[:12]})" if m.sha256 else "")
                        for m in media_records(user[-1:]))
        u = turn["usage"]
        lines.append(f"  {turn['seq']}. {turn['created'][:19].replace('T', ' ')} · {u['prompt_tokens']} prompt + "
                     f"{u['completion_tokens']} tokens\n     > {prompt}{media}\n     {turn['answer']}")
    return "\n".join(lines) + "\n"
