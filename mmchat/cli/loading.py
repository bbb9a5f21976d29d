"""From a command's Session to a loaded Runner: the model resolved (and pulled), a spinner meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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

    resolved = registry.resolve(model, pull=session.pull, progress=not session.quiet,
                                warn=(lambda m: None) if session.quiet else env.warn)
    show = env.isatty("stderr") and not session.quiet and not session.verbose
    with console.status(f"loading {Path(resolved.model).name}…") if show else contextlib.nullcontext():
        return Runner(resolved.model, mmproj or resolved.mmproj, verbose=session.verbose, **common)
