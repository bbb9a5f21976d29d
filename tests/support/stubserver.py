"""A small OpenAI-compatible server on 127.0.0.1 for what a real one cannot show on demand.

SGLang's and llama-server's discovery answers, 429 and 500 replies, a slow server, and a
record of every request (so a test can see what mmchat sent: parts, headers, concurrency).
`reply(body, attempt)` decides each chat answer; the default streams the last user text back.
`Stub.like(kind)` answers as one real server does (tests/support/servers.py): its discovery, the
fields its request model reads (`Stub.ignored`: what it would drop without a word) and the
values it refuses.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.servers import SERVERS, Server


@dataclasses.dataclass
class Reply:
    status: int = 200
    text: str = ""  # streamed word by word when status is 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    error: str = ""  # the body's error.message when status is not 200
    delay: float = 0.0  # seconds before answering
    usage: dict[str, int] | None = None
    timings: dict[str, float] | None = None  # llama-server's own, on the last chunk


def echo(body: dict[str, Any], attempt: int) -> Reply:
    """The last user message's text, word by word (media parts are counted, not echoed)."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return Reply(text=content)
    texts = [p["text"] for p in content if p["type"] == "text"]
    return Reply(text=" ".join(texts) + f" [{len(content) - len(texts)} media]")


@dataclasses.dataclass
class Stub:
    models: list[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: [{"id": "stub-model", "owned_by": "llamacpp"}]
    )
    props: dict[str, Any] | None = None  # None: /props is 404, as on vLLM and SGLang
    reply: Callable[[dict[str, Any], int], Reply] = echo
    server: Server | None = None  # a real server's request model; None takes any body
    requests: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    headers: list[dict[str, str]] = dataclasses.field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    url: str = ""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "messages" in r]

    @classmethod
    def like(cls, kind: str, **kwargs: Any) -> Stub:
        """A stub that discovers, reads and refuses as the real server `kind` does."""
        server = SERVERS[kind]
        return cls(
            models=[{"id": f"{kind}-model", "owned_by": server.owned_by}], props=server.props, server=server, **kwargs
        )

    def ignored(self) -> list[str]:
        """The fields of the requests so far that the server's request model does not read."""
        assert self.server is not None
        return sorted({k for body in self.chats for k in body} - self.server.fields)


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK wait

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            for k, v in {
                "Content-Type": "application/json",
                "Content-Length": str(len(raw)),
                **(headers or {}),
            }.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._json(200, {"object": "list", "data": stub.models})
            elif self.path == "/props" and stub.props is not None:
                self._json(200, stub.props)
            else:
                self._json(404, {"error": {"message": "Not Found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with stub.lock:
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                attempt = len(stub.chats) - 1
                stub.in_flight += 1
                stub.most_in_flight = max(stub.most_in_flight, stub.in_flight)
            try:
                refusal = stub.server.refuse(body) if stub.server else None
                reply = Reply(status=refusal[0], error=refusal[1]) if refusal else stub.reply(body, attempt)
                time.sleep(reply.delay)
                if reply.status != 200:
                    self._json(reply.status, {"error": {"message": reply.error, "code": reply.status}}, reply.headers)
                elif body.get("stream"):
                    self._stream(reply)
                else:
                    self._json(
                        200,
                        {
                            "object": "chat.completion",
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": reply.text},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": reply.usage,
                        },
                    )
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with stub.lock:
                    stub.in_flight -= 1

        def _stream(self, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            words = reply.text.split(" ")
            for i, word in enumerate(words):
                delta = {"content": word if i == 0 else " " + word}
                self._event(
                    {
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                    }
                )
            self._event(
                {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            )
            if reply.usage or reply.timings:
                self._event(
                    {"object": "chat.completion.chunk", "choices": [], "usage": reply.usage, "timings": reply.timings}
                )
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, data: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    return Handler


@contextmanager
def serve(stub: Stub | None = None) -> Iterator[Stub]:
    """Run `stub` on a free port of 127.0.0.1 until the block ends."""
    stub = stub or Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # shutdown() waits one poll
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
