"""The `mmchat` command line: thin commands over the core, one edge for terminal I/O and errors.

app.py      the Typer app and `guarded`, the one MmchatError/Ctrl-C -> exit code mapping
params.py   the flags every model command shares, made from options.py's fields (`Flags`)
loading.py  Flags -> a Target (models/target.py, under a spinner) -> a loaded Runner
(the terminal Environment, shared with the REPL, is mmchat/env.py)
ask.py, chat.py, batch.py, serve.py, admin.py   the commands
logs.py     `mmchat logs`; logflags.py the log flags ask and chat share (--no-log, --continue, --cid)
"""

from . import ask, chat  # noqa: F401, I001  (each registers its commands on `app`, in --help's order)
from . import batch, serve  # noqa: F401, I001
from . import logs, admin  # noqa: F401, I001
from .app import app, main

__all__ = ["app", "main"]
