"""`mmchat batch`: many requests, one model load, one OpenAI Batch result line each."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..env import Environment, current
from ..errors import ExitCode, InputError, MmchatError
from .app import app, guarded
from .loading import open_runner
from .params import Flags, constrained, model_flags

if TYPE_CHECKING:
    from ..batch import Request
    from ..runner import Runner

Prompt = Annotated[
    Optional[str], typer.Argument(help="The question asked of every file (not with -i).", show_default=False)
]
Files = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="Image, audio or video files: one request each, its kind told by its bytes.", show_default=False
    ),
]
Input = Annotated[
    Optional[Path], typer.Option("--input", "-i", help="Requests in OpenAI's Batch format (JSONL; '-' is stdin).")
]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results here (JSONL) instead of stdout.")]
Resume = Annotated[
    bool, typer.Option("--resume", help="With -o: skip requests that already succeeded there; run the rest.")
]
Concurrency = Annotated[
    int, typer.Option(min=1, help="Requests in flight at once (a server; a local model answers one at a time).")
]
Schema = Annotated[
    Optional[str], typer.Option(help="Constrain every answer to this JSON schema (a file or JSON text).")
]
Grammar = Annotated[Optional[str], typer.Option(help="Constrain every answer with a GBNF grammar file.")]
Log = Annotated[
    bool, typer.Option("--log", help="Log each request in logs.db as its own conversation (`mmchat logs`).")
]


@app.command()
@guarded
@model_flags(media=False)
def batch(
    ctx: typer.Context,
    prompt: Prompt = None,
    files: Files = None,
    input: Input = None,
    output: Output = None,
    resume: Resume = False,
    concurrency: Concurrency = 1,
    schema: Schema = None,
    grammar: Grammar = None,
    log: Log = False,
    *,
    flags: Flags,
) -> None:
    """Answer many requests with one model load; one result line (OpenAI's Batch output format) each.

    Exit status: 0 when every request succeeded, 1 when any failed (its line says why), 2 when
    the input itself cannot be used, 130 after Ctrl-C (finished lines are kept). Nothing is
    logged unless --log is given.

    Examples:

      mmchat batch "Describe this photo." photos/*.jpg -o results.jsonl

      mmchat batch -i requests.jsonl -o results.jsonl --resume

      mmchat batch -i requests.jsonl --base-url http://gpu-box:8080 --concurrency 4
    """
    from .. import batch as plan

    env = current()
    base = constrained(flags.generation, schema, grammar)
    requests = _requests(plan, flags, env, base, prompt, files or [], input)
    if resume and output is None:
        raise InputError("--resume needs -o: the results file to resume")
    done = _keep_finished(plan, output) if resume else set()
    total = len(requests)
    todo = collections.deque(r for r in requests if r.custom_id not in done)
    del requests  # a request is let go once its line is written (_run): a batch never comes back to it
    count = len(todo)
    runner = open_runner(flags, env, flags.model, flags.mmproj, on_completion=_logger(flags) if log else None)
    if concurrency > 1 and not runner.capabilities().concurrent:
        env.warn("a local model answers one request at a time: --concurrency applies to servers")
        concurrency = 1
    with _sink(env, output, append=resume) as sink, _stop_on_ctrl_c(env, flags.quiet) as stopping:
        failed = _run(runner, todo, sink, concurrency, stopping, _tick(runner, total, len(done)))
    runner.close_progress()
    if stopping.is_set():
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if failed:
        if not flags.quiet:
            env.notice(f"{failed} of {count} requests failed: their lines say why")
        raise typer.Exit(int(ExitCode.FAILURE))


def _requests(
    plan: Any, flags: Flags, env: Environment, base: Any, prompt: str | None, files: list[str], input: Path | None
) -> list[Request]:
    if input is not None:
        if prompt is not None or files:
            raise InputError("give either -i requests.jsonl or a prompt and files, not both")
        return plan.read_jsonl(_lines(env, input), base, str(input))
    if prompt is None or not files:
        raise InputError("give a prompt and at least one file (mmchat batch PROMPT FILES...), or -i requests.jsonl")
    if "-" in files:
        raise InputError("batch files are read from disk: '-' (stdin) is one file, give it to `mmchat ask`")
    return plan.file_requests(prompt, files, base, system=flags.system)


def _lines(env: Environment, path: Path) -> list[str]:
    if str(path) == "-":
        return env.stdin.read().splitlines()
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"requests file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the requests file {path}: {e}") from None


def _logger(flags: Flags) -> Callable[..., None]:
    """Each answered request as a conversation of its own; a failure to log only warns."""
    from ..log import LogStore, TurnLogger

    logger = TurnLogger(LogStore.open(), each_apart=True)
    return logger.hook({"model": flags.model, "mmproj": flags.mmproj, "command": "batch"})


def _keep_finished(plan: Any, output: Path | None) -> set[str]:
    """The custom_ids already answered in `output`, which keeps only their lines."""
    from ..atomic import write_atomic

    assert output is not None
    done = plan.finished_lines(output)
    if output.exists():
        write_atomic(output, "".join(f"{line}\n" for line in done.values()))
    return set(done)


def _run(
    runner: Runner,
    todo: collections.deque[Request],
    sink: Callable[[dict[str, Any]], None],
    concurrency: int,
    stopping: threading.Event,
    tick: Callable[[], None],
) -> int:
    """Answer `todo`, writing each line in input order as soon as it and those before it are done.

    What is kept in memory is bounded by the requests in flight: each leaves `todo` when it
    starts, and its decoded media leave the runner once its line is written."""
    failed = 0

    def write(line: dict[str, Any]) -> None:
        nonlocal failed
        failed += line["error"] is not None
        sink(line)
        tick()
        runner.forget()

    if concurrency == 1:  # in this thread, so a second Ctrl-C stops the model at once
        shared = False
        while todo and not stopping.is_set():
            line = _answer(runner, todo.popleft())
            shared = _keep_shared_prefix(runner, line, shared)
            write(line)
        return failed
    pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="mmchat-batch")
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    queue = _drain(todo)
    try:
        for request in _take(queue, concurrency):
            pending.append(pool.submit(_answer, runner, request))
        while pending:
            write(pending.popleft().result())
            if not stopping.is_set():
                pending.extend(pool.submit(_answer, runner, r) for r in _take(queue, 1))
    except KeyboardInterrupt:
        runner.close()  # in-flight requests end now instead of when their answers are done
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return failed


def _keep_shared_prefix(runner: Runner, line: dict[str, Any], saved: bool) -> bool:
    """Requests that share a long prefix (one system prompt and image, many questions) reuse it in
    this process; the first to reuse it saves its KV state, once for each such run of requests, so a
    later run (or --resume) restores that prefix instead of evaluating it. Whether the current run
    of requests has its state saved."""
    from ..config import DEFAULT_KV_STATE_MIN_TOKENS

    if line["error"] is not None:
        return saved
    usage = line["response"]["body"].get("usage") or {}
    reused = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    if reused < DEFAULT_KV_STATE_MIN_TOKENS:
        return False  # a new prefix begins here (or none is shared)
    return saved or runner.save_state()


def _take(queue: Iterator[Request], n: int) -> list[Request]:
    return [r for _, r in zip(range(n), queue)]


def _drain(todo: collections.deque[Request]) -> Iterator[Request]:
    while todo:
        yield todo.popleft()


def _answer(runner: Runner, request: Request) -> dict[str, Any]:
    from .. import batch as plan

    if request.error is not None:
        return plan.failure(request, request.error)
    try:
        completion = runner.chat(request.messages, request.options)
    except MmchatError as e:
        return plan.failure(request, e)
    return plan.success(request, completion.to_dict())


@contextlib.contextmanager
def _sink(env: Environment, output: Path | None, *, append: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    """One JSON line per result, flushed at once, so a kill loses at most the line being written."""
    if output is None:
        yield lambda line: (env.stdout.write(json.dumps(line, ensure_ascii=False) + "\n"), env.stdout.flush())
        return
    try:
        f: IO[str] = output.open("a" if append else "w", encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write results to {output}: {e.strerror or e}") from None
    with f:
        yield lambda line: (f.write(json.dumps(line, ensure_ascii=False) + "\n"), f.flush())


@contextlib.contextmanager
def _stop_on_ctrl_c(env: Environment, quiet: bool) -> Iterator[threading.Event]:
    """The first Ctrl-C finishes the requests in flight and stops; a second one stops at once."""
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return

    def handler(signum: int, frame: Any) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        if not quiet:
            env.notice("stopping after the current request (Ctrl-C again to stop now)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGINT, previous)


def _tick(runner: Runner, total: int, done: int) -> Callable[[], None]:
    """Advance the batch's bar (with ETA) on the runner's stderr progress display, if it has one."""
    progress = runner.progress
    count = [done]

    def tick() -> None:
        count[0] += 1
        if progress is not None:
            progress("batch", count[0], total)

    if progress is not None and total > done:
        progress("batch", done, total)
    return tick
