"""The `mmchat` app and the one edge where failures become exit codes.

Every command runs inside `guarded`: an MmchatError is one line on stderr (errors.one_line)
and its exit code; Ctrl-C is 130 wherever it lands (a load, a pull, an answer); a reader
that closed the pipe (`| head`) ends the command quietly with 0. Tracebacks only with
MMCHAT_DEBUG=1.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from .. import config
from ..env import Environment, current
from ..errors import ExitCode, MmchatError
from ..quiet import let_through
from .diagnostics import install as install_diagnostics

app = typer.Typer(
    name="mmchat",
    help="Chat with local multimodal GGUF models: images, audio, video and text, on llama.cpp.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def guarded(
    command: Callable[..., Any] | None = None, *, interrupted: Callable[[Environment], None] | None = None
) -> Any:
    """Map what a command raises to the exit code and the one line the user sees."""
    if command is None:
        return functools.partial(guarded, interrupted=interrupted)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        env = current()
        install_diagnostics()  # library warnings and notices reach stderr as `mmchat: …` lines
        let_through(env.debug)  # MMCHAT_DEBUG=1: native libraries' own stderr chatter too
        try:
            return command(*args, **kwargs)
        except MmchatError as e:
            if env.debug:
                raise
            env.error(e)
            raise typer.Exit(int(e.exit_code)) from None
        except KeyboardInterrupt:
            if interrupted is not None:
                interrupted(env)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:  # `mmchat ask ... | head`: the reader has all it wants
            _silence_stdout(env)
            raise typer.Exit(int(ExitCode.OK)) from None

    return wrapper


def _silence_stdout(env: Environment) -> None:
    """Point stdout at /dev/null, so Python's flush at exit does not complain about the pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), env.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a real file (tests)
        pass


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"mmchat {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Chat with local multimodal GGUF models: images, audio, video and text, on llama.cpp."""


def main() -> None:
    install_diagnostics()  # a broken config.toml is a logged warning: the handler says it on stderr
    defaults = config.load_user_defaults()
    served = {k: v for k, v in defaults.items() if k not in ("base_url", "api_key", "server_kind")}  # serve's own key
    app(default_map={"ask": defaults, "chat": defaults, "batch": defaults, "serve": served} if defaults else None)
