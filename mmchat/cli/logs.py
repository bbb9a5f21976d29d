"""`mmchat logs`, and the log flags `ask` and `chat` share: --log/--no-log, --continue, --cid.

`@log_options` adds those flags to a command and hands it one `LogRequest`; `start_log`
turns that into a `Logging`: the conversation continued (its media read again and checked
before any model loads) and the hook that logs each answer (mmchat/logs.py).
Precedence: --log/--no-log > config.toml (`log = false`, top level or in [defaults]) >
`mmchat logs --off` > on.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import config
from ..errors import InputError
from .app import app, guarded
from .env import Environment, current

if TYPE_CHECKING:
    from ..logs import LoggedConversation, TurnLogger
    from .params import Session


@dataclasses.dataclass(frozen=True)
class LogRequest:
    log: bool | None  # None: as config.toml and `mmchat logs --off/--on` say
    resume: bool
    cid: str | None


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


LOG_PARAMS = [
    _param("log", Annotated[Optional[bool], typer.Option("--log/--no-log", help="Log this conversation in logs.db (`mmchat logs`). [default: on, unless `mmchat logs --off` or log = false in config.toml]", show_default=False)], None),
    _param("resume", Annotated[bool, typer.Option("--continue", help="Continue the last logged conversation (its media are read again and checked against the log).")], False),
    _param("cid", Annotated[Optional[str], typer.Option("--cid", help="Continue the logged conversation with this id (or its first characters).")], None),
]


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the log flags, as one `log: LogRequest` argument (stack it under @session_options)."""
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

    def model(self, session: Session) -> tuple[str | None, str | None]:
        """The model to load: the one given, else the continued conversation's."""
        if session.model is not None or self.continuing is None:
            return session.model, session.mmproj
        return self.continuing.source.get("model"), session.mmproj or self.continuing.source.get("mmproj")

    def hook(self, model: str | None, mmproj: str | None) -> Callable[..., None] | None:
        """The Runner's on_completion for this model (None when nothing is logged)."""
        if self.logger is None:
            return None
        return self.logger.hook({"model": _absolute(model), "mmproj": _absolute(mmproj)})

    def messages(self, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`ask`: the continued conversation, then the new message; a new system prompt replaces the old one."""
        if self.continuing is None:
            return new
        history = list(self.continuing.messages)
        if new and new[0]["role"] == "system":
            history = [m for m in history if m["role"] != "system"]
            return [new[0], *history, *new[1:]]
        return history + new

    def history(self, system: str | None) -> tuple[str | None, list[dict[str, Any]]]:
        """`chat`: the system prompt (a given one wins) and the messages to open the REPL on."""
        if self.continuing is None:
            return system, []
        messages = list(self.continuing.messages)
        if messages and messages[0]["role"] == "system":
            old = messages.pop(0)["content"]
            system = system or (old if isinstance(old, str) else None)
        return system, messages


def start_log(request: LogRequest, env: Environment, quiet: bool = False) -> Logging:
    """The conversation to continue (checked: every medium read again, its sha256 compared) and the logger."""
    from .. import logmedia, logs

    enabled = request.log if request.log is not None else not logs.switched_off()
    store = logs.LogStore.open(warn=env.warn)
    continuing = None
    if request.resume or request.cid is not None:
        cid = (request.cid or store.latest()) if store.path.exists() else None  # nothing logged: create nothing
        if cid is None:
            raise InputError("no logged conversation to continue: ask something first (`mmchat logs` lists them)")
        continuing = store.load_conversation(cid)
        logmedia.check_media(continuing.id, continuing.media)
        if not quiet:
            env.notice(f"continuing conversation {continuing.id} ({continuing.turns} turn{'s' * (continuing.turns != 1)})")
    logger = logs.TurnLogger(store, warn=env.warn, continuing=continuing) if enabled else None
    return Logging(continuing, logger)


def _absolute(path: str | None) -> str | None:
    """A model given as a relative path is kept absolute, so --continue finds it from anywhere."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p.resolve()) if p.is_file() else path


# -- mmchat logs -----------------------------------------------------------------------

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

    turns = conversation["turns"]
    lines = [f"conversation {conversation['id']} · {conversation['model']} · {len(turns)} "
             f"turn{'s' * (len(turns) != 1)} · {conversation['updated'][:19].replace('T', ' ')} UTC"]
    for turn in turns:
        user = [m for m in turn["messages"] if m["role"] == "user"]
        prompt = user[-1]["content"] if user else ""
        if not isinstance(prompt, str):
            prompt = " ".join(p["text"] for p in prompt if p["type"] == "text")
        media = "".join(f"\n     {m.kind}: {m.ref}" + (f" (sha256 {m.sha256[:12]})" if m.sha256 else "")
                        for m in media_records(user[-1:]))
        u = turn["usage"]
        lines.append(f"  {turn['seq']}. {turn['created'][:19].replace('T', ' ')} · {u['prompt_tokens']} prompt + "
                     f"{u['completion_tokens']} tokens\n     > {prompt}{media}\n     {turn['answer']}")
    return "\n".join(lines) + "\n"
