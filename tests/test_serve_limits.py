"""`mmchat serve`'s limits on a FakeEngine: the media a client may name (files, devices, private
addresses), the non-loopback bind, the bounded queue, and clients that go away (uvicorn in a thread)."""

from __future__ import annotations

import http.server
import logging
import threading
import time

import httpx
import pytest

from mmchat.inputs.policy import MediaPolicy
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.helpers import invoke, local_server
from tests.support.serving import USER, client, in_thread, png_bytes, png_url

# -- media a client may name --------------------------------------------------------------------


def image_request(url: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


def test_local_files_are_refused_unless_under_media_dir(tmp_path):
    allowed = tmp_path / "media"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(png_bytes())
    (tmp_path / "b.png").write_bytes(png_bytes())
    with client() as c:
        anywhere = c.post("/v1/chat/completions", json=image_request(str(allowed / "a.png")))
        stdin = c.post("/v1/chat/completions", json=image_request("-"))
    with client(policy=MediaPolicy(local_files=[allowed])) as c:
        inside = c.post("/v1/chat/completions", json=image_request((allowed / "a.png").as_uri()))
        outside = c.post("/v1/chat/completions", json=image_request(str(allowed / ".." / "b.png")))
    assert anywhere.status_code == stdin.status_code == outside.status_code == 400
    assert (
        anywhere.json()["error"]["code"] == "media_refused"
        and "send the media inline" in anywhere.json()["error"]["message"]
    )
    assert "outside the directories the media policy allows" in outside.json()["error"]["message"]
    assert inside.status_code == 200, inside.text


@pytest.mark.parametrize("url", ["clipboard:", "screen:", "mic:3"])
def test_this_machines_clipboard_screen_and_microphone_are_never_read(url):
    engine = FakeEngine()
    with client(Runner(engine=engine, policy=MediaPolicy(local_files=True, private_addresses=True))) as c:
        response = c.post("/v1/chat/completions", json=image_request(url))
    assert response.status_code == 400 and "a service must never read its host's" in response.json()["error"]["message"]
    assert engine.calls == []


class _Png(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        body = png_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_urls_on_loopback_are_refused_without_a_connection_unless_private_urls_are_allowed():
    _Png.hits = 0
    with local_server(_Png) as where:
        with client() as c:
            direct = c.post("/v1/chat/completions", json=image_request(f"http://{where}/a.png"))
            by_name = c.post(
                "/v1/chat/completions", json=image_request(f"http://localhost:{where.split(':')[1]}/a.png")
            )
        refused_hits = _Png.hits
        with client(policy=MediaPolicy(private_addresses=True)) as c:
            allowed = c.post("/v1/chat/completions", json=image_request(f"http://{where}/a.png"))
    assert direct.status_code == by_name.status_code == 400
    assert "a loopback address, which the media policy refuses" in direct.json()["error"]["message"]
    assert (
        "localhost resolves to 127.0.0.1" in by_name.json()["error"]["message"]
        or "::1" in by_name.json()["error"]["message"]
    )
    assert refused_hits == 0  # refused before connecting
    assert allowed.status_code == 200 and allowed.json()["choices"][0]["message"]["content"].startswith("[image 40x30")


def test_the_metadata_service_and_private_networks_are_refused():
    with client() as c:
        metadata = c.post("/v1/chat/completions", json=image_request("http://169.254.169.254/latest/meta-data"))
        private = c.post("/v1/chat/completions", json=image_request("http://10.1.2.3/a.png"))
    assert "a link-local address" in metadata.json()["error"]["message"]
    assert "a private or reserved address" in private.json()["error"]["message"]


# -- the command's safety checks (before a model loads) -------------------------------------------------


def test_a_non_loopback_host_needs_a_key_or_no_api_key_said_out_loud():
    result, engine = invoke("serve", "--host", "0.0.0.0")
    both, _ = invoke("serve", "--host", "0.0.0.0", "--api-key", "k", "--no-api-key")
    assert result.exit_code == 2 and engine.calls == []
    assert result.stderr.splitlines() == [
        "mmchat: error: --host 0.0.0.0 lets other machines reach the model: give --api-key KEY (clients send it "
        "as a Bearer token), or --no-api-key to serve anyone who can connect"
    ]
    assert both.exit_code == 2 and "contradict each other" in both.stderr


def test_the_queue_refuses_with_503_and_retry_after_when_full():
    engine = FakeEngine(encode_seconds=0.4)  # the first request holds the model for 0.4 s
    with client(Runner(engine=engine, policy=MediaPolicy()), queue=0) as c:
        first: dict = {}
        thread = threading.Thread(
            target=lambda: first.update(r=c.post("/v1/chat/completions", json=image_request(png_url())))
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not c.worker.busy and time.monotonic() < deadline:
            time.sleep(0.005)
        second = c.post("/v1/chat/completions", json={"messages": USER})
        thread.join()
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert second.json()["error"]["type"] == "server_error" and "the queue is full" in second.json()["error"]["message"]
    assert first["r"].status_code == 200


# -- clients that go away (uvicorn in a thread: real sockets) ------------------------------------------


class Slow(FakeEngine):
    """Says `reply` a word every `pause` seconds, counting the words it has generated."""

    def __init__(self, pause: float = 0.05, **kw):
        super().__init__(reply=" ".join(f"w{i}" for i in range(400)), **kw)
        self.pause, self.generated = pause, 0

    def stream(self, turns, options):
        for event in super().stream(turns, options):
            if isinstance(event, str):
                time.sleep(self.pause)
                self.generated += 1
            yield event


def wait_idle(worker, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while (worker.busy or worker.waiting) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_client_that_disconnects_mid_stream_stops_its_generation_within_a_token(caplog):
    engine = Slow()
    with caplog.at_level(logging.INFO, logger="mmchat.serve.access"), in_thread(Runner(engine=engine)) as (url, worker):
        body = {"messages": USER, "max_tokens": 400, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
            got = 0
            for line in response.iter_lines():
                got += '"content": "' in line and '"content": ""' not in line
                if got == 3:
                    break
        wait_idle(worker)
        stopped_at = engine.generated
        after = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, "max_tokens": 2}, timeout=30)
    assert 3 <= stopped_at <= 5  # the engine made at most a token or two past what the client read, of 400
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] == "w0 w1"
    assert any("(client gone)" in r.getMessage() for r in caplog.records)


def test_a_waiting_client_that_goes_away_frees_its_place_in_the_queue():
    engine = Slow(pause=0.02)
    with in_thread(Runner(engine=engine), queue=1) as (url, worker):
        first = threading.Thread(
            target=lambda: httpx.post(
                f"{url}/v1/chat/completions", json={"messages": USER, "max_tokens": 30}, timeout=30
            )
        )
        first.start()
        deadline = time.monotonic() + 10
        while not worker.busy and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(httpx.ReadTimeout):  # waits behind the first, then gives up
            httpx.post(f"{url}/v1/chat/completions", json={"messages": USER}, timeout=0.3)
        deadline = time.monotonic() + 5
        while worker.waiting and time.monotonic() < deadline:
            time.sleep(0.005)
        waiting_after = worker.waiting
        third = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, "max_tokens": 1}, timeout=30)
        first.join()
    assert waiting_after == 0 and third.status_code == 200


def test_a_client_that_gives_up_on_an_unstreamed_answer_stops_it_too():
    engine = Slow()
    with in_thread(Runner(engine=engine)) as (url, worker):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json={"messages": USER, "max_tokens": 400}, timeout=0.5)
        wait_idle(worker)
    assert 0 < engine.generated < 40  # about 0.5 s of words at 0.05 s each, not the 400 asked for
