"""From a command's flags to a loaded Runner: the model found once (and pulled), a spinner meanwhile.

The CLI's edge: the environment a command sees is its `Environment`'s (MMCHAT_BASE_URL, the API keys,
MMCHAT_MODEL), read here once into the `Target`; the Runner gets the target and the flags' values."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..env import Environment
from .params import Flags

if TYPE_CHECKING:
    from ..engine.kvstate import StateStore
    from ..inputs.policy import MediaPolicy
    from ..runner import OnCompletion, Runner


def open_runner(
    flags: Flags,
    env: Environment,
    model: str | None,
    mmproj: str | None,
    on_completion: OnCompletion | None = None,
    policy: MediaPolicy | None = None,
    states: StateStore | None = None,
) -> Runner:
    """Find `model` (registry name, path, hf:, a server) and load it; the environment's engine in tests.
    `on_completion` is told of every answer (the conversation log). Without a `policy` (the user's own
    command) media may come from anywhere, the clipboard, screen and microphone included; `serve` gives one."""
    from ..render import stderr_progress
    from ..runner import Runner
    from .diagnostics import install

    install(quiet=flags.quiet, verbose=flags.verbose)
    console = env.stderr_console(flags.no_color)
    common = dict(
        load=flags.load,
        media=flags.decode,
        generation=flags.generation,
        stdin=env.stdin_bytes,
        progress=stderr_progress(console, flags.quiet),
        on_completion=on_completion,
        policy=policy,
        devices=policy is None,  # the user's own clipboard and screen; never a client's
        states=states,  # a server's: memory and disk tiers (a command's own: the disk, by the Runner)
    )
    if env.engine is not None:
        return Runner(engine=env.engine, **common)  # type: ignore[arg-type]
    from ..models import registry
    from ..models.target import Local, find_target

    spinner = env.isatty("stderr") and not flags.quiet and not flags.verbose
    with console.status(f"finding {model or 'the default model'}…") if spinner else contextlib.nullcontext():
        target = find_target(
            model,
            mmproj,
            remote=flags.remote,
            environ=env.environ,
            base_url_from="--base-url",
            pull=flags.pull,
            progress=not flags.quiet,
            known=registry.load_registry(),
        )
    what = f"loading {target.model.name}…" if isinstance(target, Local) else f"asking {target.url}…"
    with console.status(what) if spinner else contextlib.nullcontext():
        return Runner(target, verbose=flags.verbose, **common)  # type: ignore[arg-type]
