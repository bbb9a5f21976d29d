"""What bounds one download besides its size: its time, and the addresses it may reach.

A per-read timeout does not bound a download: a server that sends one byte a second never
lets a read time out. `Deadline` bounds the whole download's time, and ends one that stays
slower than a floor for a stretch (curl's --speed-limit/--speed-time: a trickle ends in the
stretch, not at the deadline); it shuts the download's sockets down, which wakes a read
blocked in the kernel. `opener` builds a urllib opener whose every connection (the first
request and each redirect) goes through one function, where the deadline records the socket
and a guard (mmchat.inputs.policy) sees the address a name resolved to before connecting.
"""

from __future__ import annotations

import collections
import http.client
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Deadline", "Guard", "opener"]


class Guard(Protocol):
    """Where a download may go (mmchat.inputs.policy.MediaPolicy implements it)."""

    def check_address(self, host: str, address: str) -> None:
        """Raise an InputError when `host`, resolved to `address`, may not be connected to."""

    def check_redirect(self, url: str, newurl: str) -> None:
        """Raise an InputError when a redirect from `url` to `newurl` may not be followed."""


class Deadline:
    """Time limits on a whole download, enforced by shutting its sockets down: `seconds` in all,
    and fewer than `floor` bytes a second over the last `stretch` seconds (0: no floor).

    The download reports its bytes with `received`; a watcher thread wakes at the deadline and
    every tenth of the stretch (at most a second apart). `slow_rate` is the rate that ended it,
    None when the deadline did (or nothing did)."""

    def __init__(self, seconds: float | None, floor: int = 0, stretch: float = 0.0):
        self.seconds = seconds
        self.floor, self.stretch = (floor, stretch) if floor > 0 and stretch > 0 else (0, 0.0)
        self.expired = False
        self.slow_rate: float | None = None
        self._received = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True) if seconds or self.floor else None

    def __enter__(self) -> Deadline:
        if self._watcher is not None:
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def received(self, n: int) -> None:
        """`n` more bytes of the body arrived."""
        with self._lock:
            self._received += n

    def _watch(self) -> None:
        start = time.monotonic()
        end = start + self.seconds if self.seconds else float("inf")
        tick = min(1.0, self.stretch / 10) if self.floor else float("inf")
        seen = collections.deque([(start, 0)])  # (when, bytes by then), back to one stretch ago
        while not self._done.wait(max(0.0, min(end, time.monotonic() + tick) - time.monotonic())):
            now = time.monotonic()
            if now >= end:
                self._expire(None)
                return
            with self._lock:
                seen.append((now, self._received))
            while len(seen) > 1 and seen[1][0] <= now - self.stretch:
                seen.popleft()  # the oldest kept is the last one at least a stretch old
            since, then = seen[0]
            if now - since >= self.stretch and (rate := (seen[-1][1] - then) / (now - since)) < self.floor:
                self._expire(rate)
                return

    def _expire(self, slow_rate: float | None) -> None:
        with self._lock:
            self.expired, self.slow_rate = True, slow_rate
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown: an SSLSocket's own would drop its state under a reading thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def opener(deadline: Deadline, guard: Guard | None, redirects: urllib.request.HTTPRedirectHandler) -> Any:
    """A urllib opener whose connections the deadline can end and the guard has checked.

    With a guard, proxies from the environment are not used: the guard must see the address
    the download really connects to, not a proxy's.
    """
    connect = _connector(deadline, guard)
    handlers: list[Any] = [redirects, _HTTPHandler(connect), _HTTPSHandler(connect)]
    if guard is not None:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


Connect = Callable[..., socket.socket]


def _connector(deadline: Deadline, guard: Guard | None) -> Connect:
    def create_connection(
        address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT, source_address: Any = None, *args: Any
    ) -> socket.socket:
        host, port = address
        if guard is None:
            sock = socket.create_connection(address, timeout, source_address)
        else:
            sock = _checked_connection(host, port, timeout, source_address, guard)
        deadline.add(sock)
        return sock

    return create_connection


def _checked_connection(host: str, port: int, timeout: Any, source_address: Any, guard: Guard) -> socket.socket:
    """Resolve once, check every address, then connect to those addresses (never resolve again)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        guard.check_address(host, sockaddr[0])
    error: OSError | None = None
    for *_, sockaddr in infos:
        try:
            return socket.create_connection((sockaddr[0], port), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address for {host}")


def _patched(http_class: Any, connect: Connect) -> Callable[..., http.client.HTTPConnection]:
    def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        conn = http_class(*args, **kwargs)
        conn._create_connection = connect  # the one seam http.client has for making its socket
        return conn

    return make


class _Connecting:
    """A urllib handler whose connections are all made by `connect`."""

    def __init__(self, connect: Connect):
        super().__init__()
        self._connect = connect

    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_patched(http_class, self._connect), req, **kwargs)  # type: ignore[misc]


class _HTTPHandler(_Connecting, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_Connecting, urllib.request.HTTPSHandler):
    pass
