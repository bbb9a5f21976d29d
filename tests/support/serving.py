"""`mmchat serve` for tests: the app in-process (Starlette's TestClient, or uvicorn in a thread, both on
a FakeEngine or a real Runner) and the command itself as a process on the tiny models."""

from __future__ import annotations

import base64
import contextlib
import io
import platform
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mmchat.inputs.policy import MediaPolicy
from mmchat.runner import Runner
from mmchat.serve.app import Served, build_app
from mmchat.serve.queue import Worker
from mmchat.testing import FakeEngine
from tests.support.helpers import MMCHAT, free_port, mmchat_env, model_args, stop, wait_until_up

KEY = "sk-test-key-0123456789"
USER = [{"role": "user", "content": "hello there"}]

# The openai and anthropic SDKs put platform.processor() in their headers, which on Linux runs `uname -p`:
# asked once here, at import, it is cached (platform._uname_cache) and no test starts that process.
platform.processor()


def png_bytes(colour=(200, 30, 40), size=(40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def png_url(colour=(200, 30, 40)) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(colour)).decode()


def app_for(
    runner: Runner | None = None, *, queue: int = 4, policy: MediaPolicy | None = None, **served: Any
) -> tuple[Any, Worker]:
    """The ASGI app on `runner` (a FakeEngine's by default, with a service's media policy): app and worker."""
    runner = runner or Runner(engine=FakeEngine(), policy=policy or MediaPolicy())
    worker = Worker(runner, queue)
    options = {"model_id": "fake-model", "capabilities": runner.capabilities(), **served}
    return build_app(worker, Served(**options)), worker


@contextlib.contextmanager
def client(runner: Runner | None = None, **kwargs: Any) -> Iterator[Any]:
    """Starlette's TestClient on the app: an httpx.Client the openai and anthropic SDKs take as http_client."""
    from starlette.testclient import TestClient

    app, worker = app_for(runner, **kwargs)
    with TestClient(app, base_url="http://testserver") as test_client:
        test_client.worker = worker
        yield test_client
    worker.join(5)


@contextlib.contextmanager
def in_thread(runner: Runner | None = None, **kwargs: Any) -> Iterator[tuple[str, Worker]]:
    """The app under uvicorn in a thread on a free 127.0.0.1 port (real sockets, real disconnects)."""
    import uvicorn

    app, worker = app_for(runner, **kwargs)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", worker
    finally:
        server.should_exit = True
        thread.join(10)
        worker.join(5)


@contextlib.contextmanager
def serve_process(
    models: Mapping[str, Path], *args: str, projector: str = "mmproj-omni", log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mmchat serve` on the tiny model and `projector`, on a free port, its stderr in `log`: (base URL, process)."""
    port = free_port()
    command = [*MMCHAT, "serve", *model_args(models, projector, greedy=False)]
    command += ["--port", str(port), *args]
    with log.open("wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=mmchat_env(env))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url, proc
    finally:
        stop(proc, 20)
        if proc.stdout is not None:
            proc.stdout.close()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    wait_until_up(
        f"{url}/health", proc, timeout, lambda: f"mmchat serve did not start: {log.read_text(errors='replace')}"
    )
