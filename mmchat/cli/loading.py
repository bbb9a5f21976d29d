"""From a command's flags to a loaded Runner: the model found once (and pulled), a spinner meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..env import Environment
from .params import Flags

if TYPE_CHECKING:
    from ..inputs.policy import MediaPolicy
    from ..runner import Runner


def open_runner(
    flags: Flags,
    env: Environment,
    model: str | None,
    mmproj: str | None,
    on_completion: Callable[..., None] | None = None,
    policy: MediaPolicy | None = None,
    states: Any = None,
) -> Runner:
    """Find `model` (registry name, path, hf:, a server) and load it; the environment's engine in tests.
    `on_completion` is told of every answer (the conversation log). Without a `policy` (the user's own
    command) media may come from anywhere, the clipboard, screen and microphone included; `serve` gives one."""
    from ..render import stderr_progress
    from ..runner import Runner
    from .diagnostics import install

    install(quiet=flags.quiet, verbose=flags.verbose)
    console = env.stderr_console(flags.no_color)
    notice = (lambda m: None) if flags.quiet else env.notice
    remote = flags.remote.with_environment(env.environ)
    common = dict(
        load=flags.load,
        media=flags.decode,
        remote=remote,
        notice=notice,
        stdin=env.stdin_bytes,
        progress=stderr_progress(console, flags.quiet),
        on_completion=on_completion,
        policy=policy,
        devices=policy is None,  # the user's own clipboard and screen; never a client's
    )
    if env.engine is not None:
        return Runner(engine=env.engine, **common)
    if states is not None:
        common["states"] = states  # a server's: memory and disk tiers (a command's own: the disk, by the Runner)
    from ..models import registry
    from ..models.target import find_target

    warn = (lambda m: None) if flags.quiet else env.warn
    spinner = env.isatty("stderr") and not flags.quiet and not flags.verbose
    with console.status(f"finding {model or 'the default model'}…") if spinner else contextlib.nullcontext():
        target = find_target(
            model,
            mmproj,
            base_url=remote.base_url,
            base_url_from="--base-url" if flags.remote.base_url else "MMCHAT_BASE_URL",
            modalities=remote.modalities,
            pull=flags.pull,
            progress=not flags.quiet,
            warn=warn,
            known=registry.load_registry(warn=warn),
        )
    what = f"asking {target.base_url}…" if target.remote else f"loading {Path(target.model or '').name}…"
    with console.status(what) if spinner else contextlib.nullcontext():
        return Runner(target, verbose=flags.verbose, **common)
