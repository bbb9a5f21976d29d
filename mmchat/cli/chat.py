"""`mmchat chat`: the REPL (mmchat/chat/) started from the command line."""

from __future__ import annotations

import typer

from .. import config
from ..env import current
from .app import app, guarded
from .loading import open_runner
from .logflags import LogRequest, log_options, start_log
from .params import MediaOrderCommand, Session, session_options


@app.command(cls=MediaOrderCommand)
@guarded
@session_options
@log_options
def chat(ctx: typer.Context, *, session: Session, log: LogRequest) -> None:
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
    logging = start_log(log, env, session.quiet)
    first, first_mmproj = logging.model(session)
    system, messages = logging.history(session.system)

    def factory(name: str | None):
        mmproj = first_mmproj if name == (first or "") else None
        return open_runner(session, env, name or None, mmproj, on_completion=logging.hook(name or None, mmproj))

    code = run_chat(factory, model_name=first or "", options=session.generation, system=system, messages=messages,
                    attachments=session.media, history_path=config.user_dir() / "history", env=env,
                    no_color=session.no_color, display=session.display)
    raise typer.Exit(code)
