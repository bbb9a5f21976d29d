"""What bounds one download besides its size: a total deadline, and the addresses it may reach.

A per-read timeout does not bound a download: a server that sends one byte a second never
lets a read time out. `Deadline` shuts the download's sockets down when its time is up, which
wakes a read blocked in the kernel. `opener` builds a urllib opener whose every connection
(the first request and each redirect) goes through one function, where the deadline records
the socket and a guard (mmchat.inputs.policy) sees the address a name resolved to before connecting.
"""

from __future__ import annotations

import http.client
import socket
import threading
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
    """A time limit on a whole download, enforced by shutting its sockets down."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire) if seconds else None
        if self._timer is not None:
            self._timer.daemon = True

    def __enter__(self) -> Deadline:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
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
    def create_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                          source_address: Any = None, *args: Any) -> socket.socket:
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
