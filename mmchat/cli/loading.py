"""From a command's Session to a loaded Runner: the model resolved (and pulled), a spinner meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..env import Environment
from ..options import RemoteOptions
from .params import Session

if TYPE_CHECKING:
    from ..runner import Runner


def open_runner(session: Session, env: Environment, model: str | None, mmproj: str | None,
                on_completion: Callable[..., None] | None = None) -> Runner:
    """Resolve `model` (registry name, path, hf:) and load it; the environment's engine in tests.
    `on_completion` is told of every answer (the conversation log)."""
    from ..render import stderr_progress
    from ..runner import Runner

    console = env.stderr_console(session.no_color)
    notice = (lambda m: None) if session.quiet else env.notice
    common = dict(load=session.load, media=session.decode, notice=notice, stdin=env.stdin_bytes,
                  progress=stderr_progress(console, session.quiet), on_completion=on_completion)
    if env.engine is not None:
        return Runner(engine=env.engine, **common)
    from ..models import registry
    from ..runner import server_for

    warn = (lambda m: None) if session.quiet else env.warn
    known = registry.load_registry(warn=warn)  # once: a broken models.toml warns once
    remote = _remote_options(session, env)
    target = server_for(model, remote.base_url, remote.modalities, known=known)
    if target is not None:
        base_url, server_model, modalities = target
        with console.status(f"asking {base_url}…") if _spinner(env, session) else contextlib.nullcontext():
            return Runner(server_model, base_url=base_url, api_key=remote.api_key, timeout=remote.timeout,
                          retries=remote.retries, modalities=modalities, server_kind=remote.server_kind, **common)

    resolved = registry.resolve(model, pull=session.pull, progress=not session.quiet, warn=warn, known=known)
    with console.status(f"loading {Path(resolved.model).name}…") if _spinner(env, session) else contextlib.nullcontext():
        return Runner(resolved.model, mmproj or resolved.mmproj, verbose=session.verbose, **common)


def _spinner(env: Environment, session: Session) -> bool:
    return env.isatty("stderr") and not session.quiet and not session.verbose


def _remote_options(session: Session, env: Environment) -> RemoteOptions:
    """--base-url and --api-key, or MMCHAT_BASE_URL and MMCHAT_API_KEY (then OPENAI_API_KEY)."""
    options = session.remote
    key = options.api_key or env.environ.get("MMCHAT_API_KEY") or env.environ.get("OPENAI_API_KEY")
    url = options.base_url or env.environ.get("MMCHAT_BASE_URL")
    return options.build({"api_key": key, "base_url": url}, base=options, label=lambda f: f"MMCHAT_{f.name.upper()} ")
