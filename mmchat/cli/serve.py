"""`mmchat serve`: the loaded model behind OpenAI's and Anthropic's HTTP APIs (mmchat/serve/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..env import Environment, current
from ..errors import InputError, MissingTool
from .app import app, guarded
from .loading import open_runner
from .params import Flags, model_flags

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_QUEUE = 16  # requests waiting behind the one being answered; one more is answered 503
DEFAULT_MAX_BODY_MB = 64

Host = Annotated[
    str, typer.Option(help="Address to listen on; another than loopback needs --api-key (or --no-api-key).")
]
Port = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]
ApiKey = Annotated[
    Optional[str],
    typer.Option(
        "--api-key",
        envvar="MMCHAT_SERVE_API_KEY",
        help="Key clients must send (Bearer or x-api-key).",
        show_default=False,
    ),
]
NoApiKey = Annotated[
    bool,
    typer.Option(
        "--no-api-key", help="Listen on a non-loopback --host without a key (anyone who reaches it may use it)."
    ),
]
Queue = Annotated[int, typer.Option(min=0, help="Requests that may wait behind the one being answered; more get 503.")]
MaxBody = Annotated[
    int, typer.Option(min=1, help="Largest request body in MB; a larger one gets 413 before it is read.")
]
MediaDir = Annotated[
    Optional[list[Path]],
    typer.Option(
        help="Let requests name local files (paths, file://) under this directory. Repeatable. [default: none]"
    ),
]
AllowPrivate = Annotated[
    bool, typer.Option("--allow-private-urls", help="Let media URLs reach loopback, private and link-local addresses.")
]
Log = Annotated[bool, typer.Option("--log", help="Keep each conversation in logs.db (`mmchat logs`); off by default.")]
KvMemory = Annotated[
    str,
    typer.Option(
        help="Memory for conversations' saved KV states (2G, 500M; 0 = none): alternating conversations each "
        "get their own prefix back, least recently used first out. They are kept on disk too, unless --no-cache."
    ),
]
DEFAULT_KV_MEMORY = "1G"


@app.command()
@guarded
@model_flags(media=False, remote=False)
def serve(
    ctx: typer.Context,
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    api_key: ApiKey = None,
    no_api_key: NoApiKey = False,
    queue: Queue = DEFAULT_QUEUE,
    max_body: MaxBody = DEFAULT_MAX_BODY_MB,
    media_dir: MediaDir = None,
    allow_private_urls: AllowPrivate = False,
    log: Log = False,
    kv_memory: KvMemory = DEFAULT_KV_MEMORY,
    *,
    flags: Flags,
) -> None:
    """Serve the model over HTTP, as OpenAI's Chat Completions and Anthropic's Messages APIs.

    One model answers one request at a time, in order; --temperature, --max-tokens and the other
    generation flags are the defaults a request's own fields override. Media URLs are read with the
    same limits as `ask`; local files only under --media-dir; this machine's clipboard, screen and
    microphone never. Stops on SIGTERM or Ctrl-C after the request in flight. See docs/serve.md.

    Examples:

      mmchat serve --model gemma-4-E2B-it

      mmchat serve -m model.gguf --mmproj mmproj.gguf --port 9000 --media-dir ~/Pictures

      mmchat serve --host 0.0.0.0 --api-key "$(openssl rand -hex 16)"
    """
    from ..inputs.policy import MediaPolicy
    from ..runner import kv_states
    from ..values import parse_size
    from .diagnostics import install

    install(quiet=flags.quiet, verbose=flags.verbose)  # what the library logs before the model is open
    env = current()
    _check_exposure(env, host, api_key, no_api_key)
    _check_installed()
    policy = MediaPolicy(
        local_files=list(media_dir) if media_dir else False,
        remote_urls=True,
        private_addresses=allow_private_urls,
    )
    memory = parse_size(kv_memory)
    if memory is None:
        raise InputError(f"--kv-memory {kv_memory!r} is not a size: give bytes or 500M, 2G (0 = none)")
    runner = open_runner(
        flags,
        env,
        flags.model,
        flags.mmproj,
        on_completion=_logger(flags) if log else None,
        policy=policy,
        states=kv_states(flags.load, memory),  # a memory tier for conversations that alternate, and the disk
    )
    try:
        _run(env, flags, runner, host, port, api_key, queue, max_body)
    finally:
        runner.close()


def _check_installed() -> None:
    """starlette and uvicorn are the `serve` extra: without them, one line saying how to get them."""
    import importlib.util

    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingTool(f"mmchat serve needs {' and '.join(missing)}: pip install 'mmchat[serve]'")


def _check_exposure(env: Environment, host: str, api_key: str | None, no_api_key: bool) -> None:
    """Loopback by default; another address needs a key, or --no-api-key said out loud."""
    from ..serve.guard import is_loopback

    if api_key is not None and no_api_key:
        raise InputError("--api-key and --no-api-key contradict each other: give one of them")
    if api_key is not None and not api_key.strip():
        raise InputError("--api-key is empty: give the key clients must send")
    if is_loopback(host) or api_key is not None:
        return
    if not no_api_key:
        raise InputError(
            f"--host {host} lets other machines reach the model: give --api-key KEY (clients send it as a "
            "Bearer token), or --no-api-key to serve anyone who can connect"
        )
    env.warn(f"serving on {host} without an API key: anyone who can reach this port can use the model")


def _run(
    env: Environment, flags: Flags, runner, host: str, port: int, key: str | None, queue: int, max_mb: int
) -> None:
    from ..serve.app import Served
    from ..serve.queue import SavedStates, Worker
    from ..serve.run import access_to_stderr, serve

    name = runner.capabilities().model_name
    given = flags.model or ""
    model_id = given if given and not given.endswith(".gguf") and not Path(given).exists() else Path(name).stem
    served = Served(
        model_id=model_id,
        capabilities=runner.capabilities(),
        generation=flags.generation,
        aliases=frozenset(n for n in (name, Path(name).stem, given) if n),
        api_key=key,
        max_body=max_mb * 1024 * 1024,
        system=flags.system,
    )
    access_to_stderr(env.stderr)
    shown = f"[{host}]" if ":" in host else host
    env.notice(f"serving {model_id} ({runner.capabilities().describe()}) on http://{shown}:{port}/v1")
    serve(Worker(runner, queue, states=SavedStates(runner)), served, host, port)


def _logger(flags: Flags):
    """Every answered request a turn in logs.db, grouped into conversations as `chat` groups them."""
    from ..log import LogStore, TurnLogger

    logger = TurnLogger(LogStore.open())
    return logger.hook({"model": flags.model, "mmproj": flags.mmproj, "command": "serve"})
