"""`mmchat chat`: the REPL (mmchat/chat/) started from the command line."""

from __future__ import annotations

import typer

from .. import config
from ..env import current
from .app import app, guarded
from .loading import open_runner
from .logflags import LogRequest, log_options, start_log
from .params import Flags, MediaOrderCommand, model_flags


@app.command(cls=MediaOrderCommand)
@guarded
@model_flags
@log_options
def chat(ctx: typer.Context, *, flags: Flags, log: LogRequest) -> None:
    """Talk with a model in the terminal: attach media as you go, follow-ups never re-encode them.

    Media given here are attached to the first message. Inside, /help lists the commands
    (/attach, /detach, /retry, /undo, /save, /load, /model, /set, ...).

    Examples:

      mmchat chat --image photo.jpg

      mmchat chat -m qwen2.5-vl-3b --system "Answer briefly."

      mmchat chat --continue
    """
    from ..chat.loop import run_chat

    env = current()
    log_turns = start_log(log, env, flags.quiet)
    first, first_mmproj = log_turns.model(flags)
    system, messages = log_turns.history(flags.system)

    def factory(name: str | None):
        mmproj = first_mmproj if name == (first or "") else None
        return open_runner(flags, env, name or None, mmproj, on_completion=log_turns.hook(name or None, mmproj))

    code = run_chat(
        factory,
        model_name=first or "",
        options=flags.generation,
        system=system,
        messages=messages,
        attachments=flags.media,
        history_path=config.user_dir() / "history",
        env=env,
        no_color=flags.no_color,
        display=flags.display,
    )
    raise typer.Exit(code)
