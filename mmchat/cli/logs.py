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
Query = Annotated[
    Optional[str], typer.Option("--query", "-q", help="Only conversations whose messages or answers contain this text.")
]
Cid = Annotated[Optional[str], typer.Option("--cid", help="Show this conversation (its id or first characters).")]
Off = Annotated[bool, typer.Option("--off", help="Stop logging ask and chat (--log still logs one).")]
On = Annotated[bool, typer.Option("--on", help="Log ask and chat again.")]
PathFlag = Annotated[bool, typer.Option("--path", help="Print where the log is and exit.")]
Preview = Annotated[
    bool,
    typer.Option(
        "--preview", help="Draw each logged medium that is still there, unchanged, as a thumbnail (on a terminal)."
    ),
]


@app.command("logs")
@guarded
def logs_command(
    count: Count = 5,
    json_output: Json = False,
    query: Query = None,
    cid: Cid = None,
    off: Off = False,
    on: On = False,
    path: PathFlag = False,
    preview: Preview = False,
) -> None:
    """List the logged conversations, newest first, or show one; switch logging off and on.

    Every ask and chat turn is logged in MMCHAT_HOME/logs.db: the messages (media as their
    path or URL and sha256, never the bytes), the answer, usage and timings.

    Examples:

      mmchat logs -n 3

      mmchat logs --cid 3f9a --json

      mmchat logs -n 1 --preview

      mmchat ask --continue "And the colours?"
    """
    from .. import log as logs

    env = current()
    if off and on:
        raise InputError("--off and --on contradict each other: give one")
    if off or on:
        _switch(env, on)
        return
    if path:
        print(logs.log_path(), file=env.stdout)
        return
    store = logs.LogStore.open()
    found = store.conversations(limit=count or None, query=query, cid=cid) if store.path.exists() else []
    if json_output:
        print(json.dumps(found, ensure_ascii=False, indent=1), file=env.stdout)
        return
    if not found:
        env.notice("no logged conversations" + (f" contain {query!r}" if query else ""))
    if logs.switched_off():
        env.notice("logging is off: `mmchat logs --on` turns it back on")
    thumbnails = None
    if preview:
        from ..preview import Previewer

        thumbnails = Previewer.for_stream(
            env, "stdout", setting=True, default=True, rows=config.DEFAULT_PREVIEW_THUMB_ROWS
        )
    for i, conversation in enumerate(found):
        if i:
            print(file=env.stdout)
        _show(env, conversation, thumbnails)


def _switch(env: Environment, on: bool) -> None:
    from .. import log as logs

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


def _show(env: Environment, conversation: dict[str, Any], thumbnails: Any = None) -> None:
    """One conversation as a person reads it: a header, then each turn's prompt, its media's
    caption lines (with `thumbnails`, each medium drawn under its line), and the answer."""
    from ..log import prompt_of
    from ..log.media import media_records

    out = env.stdout
    turns = conversation["turns"]
    print(
        f"conversation {conversation['id']} · {conversation['model']} · {len(turns)} "
        f"turn{'s' * (len(turns) != 1)} · {conversation['updated'][:19].replace('T', ' ')} UTC",
        file=out,
    )
    before: dict[str, Any] = {}
    for turn in turns:
        user = [m for m in turn["messages"] if m["role"] == "user"]
        u = turn["usage"]
        print(
            f"  {turn['seq']}. {turn['created'][:19].replace('T', ' ')} · {u['prompt_tokens']} prompt + "
            f"{u['completion_tokens']} tokens\n     > {prompt_of(user)}",
            file=out,
        )
        media = media_records(user[-1:])
        for m in media:
            tokens = _new_tokens(m.kind, media, u, before)
            print(f"     {_caption(m, tokens)}", file=out, flush=True)
            if thumbnails is not None:
                _thumbnail(env, thumbnails, m, tokens)
        before = u
        print(f"     {turn['answer']}", file=out)


def _new_tokens(kind: str, media: list, usage: dict[str, Any], before: dict[str, Any]) -> int | None:
    """What a medium cost, when it is the turn's only new one of its kind: the growth of the
    prompt's image (or audio) tokens over the turn before; None when that does not tell."""
    key = "audio_tokens" if kind == "audio" else "image_tokens"
    if sum(1 for m in media if (m.kind == "audio") == (kind == "audio")) != 1:
        return None
    grown = (usage.get("prompt_tokens_details") or {}).get(key, 0) - (before.get("prompt_tokens_details") or {}).get(
        key, 0
    )
    return grown if grown > 0 else None


def _caption(m: Any, tokens: int | None) -> str:
    """A logged medium's caption line: its name, kind, cost, and where it was and which bytes it had."""
    from ..preview import label_of

    cost = f" · {tokens:,} token{'s' * (tokens != 1)}" if tokens else ""
    sha = f" (sha256 {m.sha256[:12]})" if m.sha256 else ""
    return f"{m.kind}: {m.ref}{sha} · {label_of(m.ref)}{cost}"


def _thumbnail(env: Environment, previewer: Any, m: Any, tokens: int | None) -> None:
    """The medium drawn as the model got it, when its file is still there with the bytes that were logged."""
    from ..errors import MmchatError
    from ..log.media import verify_media
    from ..preview import label_of

    if m.source != "path" or m.sha256 is None:
        return
    try:
        verify_media("", [m])
        segments = _decoded(m.kind, m.ref)
    except MmchatError:
        print("       (not drawn: the file is gone or changed since)", file=env.stdout)
        return
    cost = f"{tokens:,} token{'s' * (tokens != 1)}" if tokens else "cost not logged"
    kind = m.kind if m.kind != "file" else "image"  # a file part in a log is a PDF's pages or a text file
    previewer.show(label_of(m.ref), kind, segments, None, cost=cost)


def _decoded(kind: str, path: str) -> list:
    """A file decoded with the default media options, as a model that takes everything would get it."""
    from ..engine.base import Capabilities
    from ..inputs.part import locate
    from ..inputs.resolver import MediaResolver
    from ..messages import MediaPart
    from ..options import MediaOptions

    caps = Capabilities(vision=True, audio=True, audio_sample_rate=16000, n_ctx=1 << 30, model_name="logs")
    return MediaResolver(caps).segments(MediaPart(kind, locate(path), where="log"), MediaOptions())  # type: ignore[arg-type]
