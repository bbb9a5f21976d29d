"""The log flags `ask` and `chat` share: --log/--no-log, --continue, --cid (`mmchat logs` is cli/logs.py).

`@log_options` adds those flags to a command and hands it one `LogRequest`; `start_log`
turns that into a `Logging`: the conversation continued (its media read again and checked
before any model loads) and the hook that logs each answer (mmchat/log/).
Precedence: --log/--no-log > config.toml (`log = false`, top level or in [defaults]) >
`mmchat logs --off` > on.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..env import Environment
from ..errors import InputError
from .params import _param

if TYPE_CHECKING:
    from .. import messages as msgs
    from ..log import LoggedConversation, TurnLogger
    from .params import Flags


@dataclasses.dataclass(frozen=True)
class LogRequest:
    log: bool | None  # None: as config.toml and `mmchat logs --off/--on` say
    resume: bool
    cid: str | None


LOG_PARAMS = [
    _param(
        "log",
        Annotated[
            Optional[bool],
            typer.Option(
                "--log/--no-log",
                help="Log this conversation in logs.db (`mmchat logs`). [default: on, unless `mmchat logs --off` or log = false in config.toml]",
                show_default=False,
            ),
        ],
        None,
    ),
    _param(
        "resume",
        Annotated[
            bool,
            typer.Option(
                "--continue",
                help="Continue the last logged conversation (its media are read again and checked against the log).",
            ),
        ],
        False,
    ),
    _param(
        "cid",
        Annotated[
            Optional[str],
            typer.Option("--cid", help="Continue the logged conversation with this id (or its first characters)."),
        ],
        None,
    ),
]


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the log flags, as one `log: LogRequest` argument (stack it under @model_flags)."""
    sig = inspect.signature(command, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "log"]
    names = [p.name for p in LOG_PARAMS]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        request = LogRequest(*(kwargs.pop(n) for n in names))  # before kwargs is spread: the flag is `log` too
        return command(**kwargs, log=request)

    wrapper.__signature__ = sig.replace(parameters=[*own, *LOG_PARAMS])  # type: ignore[attr-defined]
    return wrapper


@dataclasses.dataclass
class Logging:
    """What a model command does with the log: the conversation it continues and who logs its answers."""

    continuing: LoggedConversation | None
    logger: TurnLogger | None

    def model(self, flags: Flags) -> tuple[str | None, str | None]:
        """The model to load: the one given, else the continued conversation's."""
        if flags.model is not None or self.continuing is None:
            return flags.model, flags.mmproj
        return self.continuing.source.get("model"), flags.mmproj or self.continuing.source.get("mmproj")

    def hook(self, model: str | None, mmproj: str | None) -> Callable[..., None] | None:
        """The Runner's on_completion for this model (None when nothing is logged)."""
        if self.logger is None:
            return None
        return self.logger.hook({"model": model, "mmproj": mmproj})

    def messages(self, new: list[Any]) -> list[Any]:
        """`ask`: the continued conversation (parsed when it was loaded: not parsed again), then the new
        message; a new system prompt replaces the old one."""
        if self.continuing is None:
            return new
        history: list[Any] = list(self.continuing.conversation)
        if new and _role(new[0]) == "system":
            history = [m for m in history if m.role != "system"]
            return [new[0], *history, *new[1:]]
        return history + new

    def history(self, system: str | None) -> tuple[str | None, list[msgs.Message]]:
        """`chat`: the system prompt (a given one wins) and the messages to open the REPL on (parsed when
        the log was read: the REPL keeps them as they are)."""
        if self.continuing is None:
            return system, []
        messages = list(self.continuing.conversation)
        if messages and messages[0].role == "system":
            old = messages.pop(0)
            system = system or (old.text if old.plain else None)
        return system, messages


def start_log(request: LogRequest, env: Environment, quiet: bool = False) -> Logging:
    """The conversation to continue (checked: every medium read again, its sha256 compared) and the logger."""
    from .. import log as logs
    from ..log import media as logmedia

    enabled = request.log if request.log is not None else not logs.switched_off()
    store = logs.LogStore.open()
    continuing = None
    if request.resume or request.cid is not None:
        cid = (request.cid or store.latest()) if store.path.exists() else None  # nothing logged: create nothing
        if cid is None:
            raise InputError("no logged conversation to continue: ask something first (`mmchat logs` lists them)")
        continuing = store.load_conversation(cid)
        logmedia.verify_media(continuing.id, continuing.media)
        if not quiet:
            env.notice(
                f"continuing conversation {continuing.id} ({continuing.turns} turn{'s' * (continuing.turns != 1)})"
            )
    logger = logs.TurnLogger(store, continuing=continuing) if enabled else None
    return Logging(continuing, logger)


def _role(message: Any) -> str:
    """A message's role, parsed or an OpenAI dict."""
    return message["role"] if isinstance(message, dict) else message.role
