"""What the tests share: one greedy setting, one way to start `mmchat` as a user would, and the
in-process ways to drive it (`invoke` on a FakeEngine, `invoke_real`, the REPL's `chat`).

GREEDY is for `Runner.chat(...)` keywords; GREEDY_ARGS is the same setting on the command line.
A test that needs another max_tokens says so where it calls: `**{**GREEDY, "max_tokens": 8}`,
or a trailing `"-n", "8"` after GREEDY_ARGS (the last of a repeated option wins in click).
THREADS / THREADS_ARGS are the load option the tests pass to keep runs small and alike.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmchat.env import Terminal
from mmchat.testing import FakeEngine

if TYPE_CHECKING:
    from click.testing import Result

    from mmchat.results import ChatCompletion
    from mmchat.runner import Runner

GREEDY: dict[str, Any] = dict(temperature=0, max_tokens=10)
THREADS = 2


def as_flags(options: Mapping[str, Any]) -> list[str]:
    """`{"max_tokens": 10}` -> `["--max-tokens", "10"]`; a None value is left out."""
    flags: list[str] = []
    for name, value in options.items():
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


GREEDY_ARGS = as_flags(GREEDY)  # --temperature 0 --max-tokens 10
THREADS_ARGS = as_flags({"threads": THREADS})  # --threads 2

MMCHAT = [sys.executable, "-m", "mmchat"]


def model_args(
    models: Mapping[str, Path],
    projector: str | Path | None = "mmproj-vision",
    *,
    model: str | Path = "llm",
    greedy: bool = True,
    threads: bool = True,
) -> list[str]:
    """`--model`, `--mmproj` (None: none), the greedy setting and the thread count, as a command on the
    tiny models takes them: one spelling for every test. A str names one of the `models` fixture's
    files, a Path is a file of the test's own."""
    args = ["--model", str(models[model] if isinstance(model, str) else model)]
    if projector is not None:
        args += ["--mmproj", str(models[projector] if isinstance(projector, str) else projector)]
    return [*args, *(GREEDY_ARGS if greedy else []), *(THREADS_ARGS if threads else [])]


#: what a developer may have exported that would reach the tests or the processes they start (a server's
#: URL and key, a default model, colour, debug output); tests/conftest.py clears them. MMCHAT_HOME is set
#: per test, and the fuzz count is the suite's own knob.
_USER_PREFIXES = ("MMCHAT_", "OPENAI_")
_USER_VARS = ("NO_COLOR",)
_KEPT = frozenset({"MMCHAT_HOME", "MMCHAT_FUZZ_EXAMPLES"})


def user_vars(environ: Mapping[str, str]) -> list[str]:
    """The exported variables that would change what mmchat does in a test."""
    return [v for v in environ if v not in _KEPT and (v.startswith(_USER_PREFIXES) or v in _USER_VARS)]


def mmchat_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The one environment an mmchat subprocess gets: this process's (which tests/conftest.py
    has given its own MMCHAT_HOME, without the user's MMCHAT_*, OPENAI_* or NO_COLOR), updated
    by `env`, and never MMCHAT_DEBUG (it lets native stderr chatter through)."""
    full = {**os.environ, **(env or {})}
    full.pop("MMCHAT_DEBUG", None)
    return full


def run_mmchat(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes = b"", timeout: float = 120
) -> subprocess.CompletedProcess:
    """`python -m mmchat ARGS...` with stdin, stdout and stderr as bytes pipes."""
    return subprocess.run([*MMCHAT, *args], input=stdin, capture_output=True, timeout=timeout, env=mmchat_env(env))


def invoke(
    *args: str,
    engine=None,
    input: str | None = None,
    stdout_isatty: bool = False,
    stderr_isatty: bool = False,
    environ=None,
) -> tuple[Result, FakeEngine]:
    """Run `mmchat ARGS` in-process on a FakeEngine (milliseconds); the result and the engine that answered."""
    from typer.testing import CliRunner

    from mmchat.cli import app
    from mmchat.env import Environment, use

    engine = engine if engine is not None else FakeEngine()
    env = Environment(
        engine=engine,
        stdin_isatty=input is None,
        stdout_isatty=stdout_isatty,
        stderr_isatty=stderr_isatty,
        environ=environ if environ is not None else {},
    )
    with use(env):
        result = CliRunner().invoke(app, list(args), input=input)
    return result, engine


def invoke_real(*args: str, environ: dict[str, str] | None = None, input: str | None = None) -> Result:
    """`mmchat ARGS` in-process with no engine given: the command finds its server or loads its model itself."""
    from typer.testing import CliRunner

    from mmchat.cli import app
    from mmchat.env import Environment, use

    env = Environment(stdin_isatty=input is None, stdout_isatty=False, stderr_isatty=False, environ=environ or {})
    with use(env):
        return CliRunner().invoke(app, list(args), input=input)


CTRL_C, CTRL_D = "\x03", "\x04"


def chat(
    tmp_path: Path, *keys: str, runner: Runner | None = None, factory=None, terminal: bool = False, **kwargs
) -> tuple[int, str]:
    """Type `keys` (a str is a line, Enter added) into the REPL's run_chat, through a real prompt_toolkit
    session on pipe input; the exit code and what the user saw."""
    import io

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from rich.console import Console

    from mmchat.chat.loop import run_chat
    from mmchat.options import GenerationOptions
    from mmchat.runner import Runner

    runner = runner or Runner(engine=FakeEngine())
    buf = io.StringIO()
    console = Console(file=buf, width=100, height=12, force_terminal=terminal, highlight=False)
    options = dict(
        model_name="test-model",
        options=GenerationOptions(),
        system=None,
        attachments=[],
        history_path=tmp_path / "h" / "history",
    )
    options.update(kwargs)
    with create_pipe_input() as inp:
        inp.send_text("".join(k if k.endswith((CTRL_C, CTRL_D)) else k + "\r" for k in keys) + CTRL_D)
        code = run_chat(factory or (lambda name: runner), input=inp, output=DummyOutput(), console=console, **options)
    return code, buf.getvalue()


def completion(text: str) -> ChatCompletion:
    """A finished answer as the log stores one (3 prompt tokens, 1 generated)."""
    from mmchat.engine.base import Timings, Usage
    from mmchat.results import ChatCompletion, ChatMessage, Choice

    return ChatCompletion("m", [Choice(ChatMessage(text), "stop")], Usage(3, 1), Timings())


def write_turns(args: tuple[str, int]) -> None:
    """Log `n` turns to conversation `name` (run in other processes, so it lives here and not in a test module)."""
    from mmchat.log import LogStore

    name, n = args
    store = LogStore.open()
    for i in range(n):
        store.log_turn(name, "m", [{"role": "user", "content": f"{name} {i}"}], completion(f"{name}-{i}"))


class Interrupting(FakeEngine):
    """Ctrl-C arrives after `after` words of each answer."""

    def __init__(self, after: int, **kw):
        super().__init__(**kw)
        self.after = after

    def stream(self, turns, options):
        words = 0
        for event in super().stream(turns, options):
            if isinstance(event, str):
                if words == self.after:
                    raise KeyboardInterrupt
                words += 1
            yield event


@contextlib.contextmanager
def local_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (a free port) for the block: its "host:port"."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)  # shutdown() waits one poll
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class Trickle(http.server.BaseHTTPRequestHandler):
    """Sends a PNG (or, at /headers, its status line) a byte at a time: a server that never quite
    stops sending. `seconds_per_byte` None spreads the PNG over about 10 s."""

    seconds_per_byte: float | None = None

    def do_GET(self) -> None:
        import io
        import time

        import PIL.Image

        buf = io.BytesIO()
        PIL.Image.new("RGB", (32, 32), (0, 90, 200)).save(buf, "PNG")
        body = buf.getvalue()
        pause = self.seconds_per_byte if self.seconds_per_byte is not None else min(0.1, 10 / len(body))
        try:
            if self.path == "/headers":
                for byte in b"HTTP/1.0 200 OK\r\n":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.6)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class Scripted(Terminal):
    """A terminal whose reply is given: what a test of detection needs, and no more."""

    def __init__(self, reply: bytes, environ: dict[str, str] | None = None, size=(100, 40, 0, 0)):
        super().__init__(-1, environ or {"TERM": "xterm-256color"})
        self.reply, self._size, self.asked = reply, size, []

    def query(self, data, done, timeout):
        self.asked.append(data)
        return self.reply

    def size(self):
        return self._size

    def tmux_passthrough(self):
        return False, ""


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """End a server a test or benchmark started: SIGTERM (it drains and exits), SIGKILL if it has not within `timeout`."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_cpp_server(models: Mapping[str, Path], log: Any = subprocess.DEVNULL, timeout: float = 90) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server (the real one, `llama_cpp.server`) on the
    tiny vision pair, on a free 127.0.0.1 port, for the block: its base URL. RuntimeError when it
    does not answer /v1/models within `timeout` seconds."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(models["llm"])]
    command += ["--clip_model_path", str(models["mmproj-vision"]), "--chat_format", "mtmd"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--n_threads", "2"]
    command += ["--interrupt_requests", "False"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/v1/models", proc, timeout, lambda: "llama_cpp.server did not start")
        yield url
    finally:
        stop(proc)


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float, why: Callable[[], str]) -> None:
    """Until `url` answers 200: the one wait for a server a test or benchmark started; RuntimeError(why())
    when the process ends first or `timeout` seconds pass."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(why())
        time.sleep(0.1)


@contextlib.contextmanager
def logged(name: str = "mmchat", level: int = logging.DEBUG) -> Iterator[list[str]]:
    """The messages logged to `name` (and below it) meanwhile, at `level` and up: the library's notices
    as a Python user's own handler sees them, whatever handler or propagation the CLI set up before."""
    said: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


@contextlib.contextmanager
def warned(sink: Callable[[str], Any] | None = None) -> Iterator[list[str]]:
    """The warnings mmchat logs meanwhile, as a Python user's own handler gets them; each also goes to
    `sink` as it comes (`pytest.fail`: a warning fails the test where it is given)."""
    said: list[str] = []

    def heard(message: str) -> None:
        said.append(message)
        if sink is not None:
            sink(message)

    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: heard(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("mmchat")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(before, logging.WARNING) if before else logging.WARNING)
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
