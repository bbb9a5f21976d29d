"""The server's life: uvicorn on the app, SIGTERM draining the queue, the access lines on stderr.

uvicorn's own shutdown (uvicorn/server.py: stop listening, let open requests end, then return)
is what SIGTERM and Ctrl-C start; before it, `Worker.drain` refuses what waits in the queue
(503) so the request being answered is the only one the shutdown waits for. After SIGTERM the
command exits 0; after Ctrl-C, 130 as every command does.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import uvicorn

from .app import Served, build_app
from .queue import Worker


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, worker: Worker):
        super().__init__(config)
        self.worker = worker

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.worker.drain()
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:  # a drained stop is a clean one: exit 0 (uvicorn would raise it again, -15)
            self._captured_signals.remove(sig)


def access_to_stderr(stream: Any = None) -> None:
    """The access lines and the server's own failures, one line each, on stderr (the CLI's choice)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("mmchat.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(worker: Worker, served: Served, host: str, port: int) -> None:
    """Answer until SIGTERM or Ctrl-C; the request in flight is finished first."""
    config = uvicorn.Config(
        build_app(worker, served),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # ours, with tokens (serve/guard.py)
        lifespan="off",
        server_header=False,
    )
    server = _Server(config, worker)
    try:
        server.run()
    finally:
        worker.join()
