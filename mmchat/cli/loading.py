"""From a command's Session to a loaded Runner: the model resolved (and pulled), a spinner meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..options import RemoteOptions
from .env import Environment
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
    from .. import registry

    remote = remote_target(session, env, model)
    if remote is not None:
        base_url, server_model, options = remote
        with console.status(f"asking {base_url}…") if _spinner(env, session) else contextlib.nullcontext():
            return Runner(server_model, base_url=base_url, api_key=options.api_key, timeout=options.timeout,
                          retries=options.retries, modalities=options.modalities, **common)

    resolved = registry.resolve(model, pull=session.pull, progress=not session.quiet,
                                warn=(lambda m: None) if session.quiet else env.warn)
    with console.status(f"loading {Path(resolved.model).name}…") if _spinner(env, session) else contextlib.nullcontext():
        return Runner(resolved.model, mmproj or resolved.mmproj, verbose=session.verbose, **common)


def _spinner(env: Environment, session: Session) -> bool:
    return env.isatty("stderr") and not session.quiet and not session.verbose


def remote_target(session: Session, env: Environment, model: str | None
                  ) -> tuple[str, str | None, RemoteOptions] | None:
    """(base URL, server model id, options) when a server answers: --base-url, MMCHAT_BASE_URL,
    or a registry entry that carries a base_url; None for a local model."""
    from .. import registry

    options = session.remote
    if options.api_key is None:
        key = env.environ.get("MMCHAT_API_KEY") or env.environ.get("OPENAI_API_KEY")
        options = options.replace(api_key=key) if key else options
    base_url = options.base_url or env.environ.get("MMCHAT_BASE_URL")
    if base_url:
        return RemoteOptions.build({"base_url": base_url}, label=lambda f: "MMCHAT_BASE_URL ").base_url, model, options
    entry = registry.served(model, warn=env.warn)
    if entry is None:
        return None
    if options.modalities is None and entry.modalities:
        options = options.replace(modalities=entry.modalities)
    return entry.base_url, entry.server_model or None, options
