"""MediaPolicy: what a Runner behind a service may read; every refusal names its rule and comes
before anything is read (no file opened, no request reaching the server)."""

from __future__ import annotations

import base64
import http.server
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import mmchat.inputs.sources
from mmchat import MediaOptions, MediaPolicy, MediaRefused, Runner, image_part, user_message
from mmchat.testing import FakeEngine
from tests.support.helpers import local_server
from tests.support.mediafiles import noise_png

# --- helpers -------------------------------------------------------------------------------


def ask(runner: Runner, *urls: str) -> str:
    reply = runner.chat([user_message("what is it", [image_part(u) for u in urls])])
    return reply.choices[0].message.content


def service(**rules) -> tuple[Runner, FakeEngine]:
    engine = FakeEngine()
    return Runner(engine=engine, policy=MediaPolicy(**rules)), engine


@pytest.fixture
def no_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any read of a source; a refusal must come before one."""
    reads: list[str] = []
    real_read, real_local = mmchat.inputs.sources.read_source, mmchat.inputs.sources.local_source

    def read_source(url, **kw):
        reads.append(getattr(url, "text", url))  # a str, or a parsed Location
        return real_read(url, **kw)

    def local_source(url, *a, **kw):
        reads.append(getattr(url, "text", url))
        return real_local(url, *a, **kw)

    monkeypatch.setattr(mmchat.inputs.sources, "read_source", read_source)
    monkeypatch.setattr(mmchat.inputs.sources, "local_source", local_source)
    return reads


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """An allowed directory with a picture in it, and a secret picture beside it."""
    allowed = tmp_path / "uploads"
    allowed.mkdir()
    noise_png(allowed / "cat.png")
    noise_png(tmp_path / "secret.png", seed=1)
    return allowed


# --- local files ---------------------------------------------------------------------------


def test_local_files_refused(media, no_reads):
    runner, engine = service(local_files=False)
    for url in (str(media / "cat.png"), (media / "cat.png").as_uri(), "-"):
        with pytest.raises(MediaRefused, match=r"refused by the media policy \(local_files=False\)"):
            ask(runner, url)
    assert no_reads == [] and engine.calls == []


def test_local_files_under_a_directory(media, no_reads):
    runner, _ = service(local_files=[media])
    assert ask(runner, str(media / "cat.png")).startswith("[image 96x64")
    with pytest.raises(MediaRefused, match=r"outside the directories the media policy allows \(local_files=\["):
        ask(runner, str(media / ".." / "secret.png"))
    assert no_reads == [str((media / "cat.png").resolve())]


def test_a_symlink_cannot_leave_the_directory(media, no_reads):
    (media / "link.png").symlink_to(media.parent / "secret.png")
    (media / "inside.png").symlink_to(media / "cat.png")
    runner, _ = service(local_files=[str(media)])
    with pytest.raises(MediaRefused, match="link.png is outside the directories"):
        ask(runner, str(media / "link.png"))
    assert no_reads == []
    assert ask(runner, str(media / "inside.png")).startswith("[image 96x64")


def test_a_refusal_anywhere_in_the_request_comes_before_any_read(media, no_reads):
    runner, engine = service(local_files=[media])
    with pytest.raises(MediaRefused, match="secret.png"):
        ask(runner, str(media / "cat.png"), str(media.parent / "secret.png"))
    assert no_reads == [] and engine.calls == []


def test_without_a_policy_everything_the_user_can_read_is_allowed(media):
    runner = Runner(engine=FakeEngine(), media=MediaOptions(image_max_side=32))  # the CLI's case
    assert ask(runner, str(media / ".." / "secret.png")).startswith("[image 32x21")


# --- remote URLs ---------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    png = b""
    requests: list[str] = []
    redirects: dict[str, str] = {}

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.png)))
        self.end_headers()
        self.wfile.write(self.png)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(media: Path) -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"png": (media / "cat.png").read_bytes(), "requests": [], "redirects": {}})
    with local_server(handler) as where:
        yield where, handler


def test_remote_urls_refused(server):
    where, handler = server
    runner, _ = service(remote_urls=False)
    with pytest.raises(MediaRefused, match=r"remote URLs are refused by the media policy \(remote_urls=False\)"):
        ask(runner, f"http://{where}/cat.png")
    assert handler.requests == []


def test_a_loopback_address_is_refused_unless_named(server):
    where, handler = server
    runner, _ = service(remote_urls=True)
    with pytest.raises(
        MediaRefused, match="127.0.0.1, a loopback address, which the media policy refuses unless named"
    ):
        ask(runner, f"http://{where}/cat.png")
    named, _ = service(remote_urls=["127.0.0.1"])
    assert ask(named, f"http://{where}/cat.png").startswith("[image 96x64")
    assert handler.requests == ["/cat.png"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_name_is_checked_on_the_address_it_resolves_to(server, scheme):
    where, handler = server
    port = where.split(":")[1]
    runner, _ = service(remote_urls=["localhost"])  # the host is allowed; where it leads is not
    with pytest.raises(MediaRefused, match="localhost resolves to 127.0.0.1, a loopback address"):
        ask(runner, f"{scheme}://localhost:{port}/cat.png")
    assert handler.requests == []


def test_every_redirect_is_checked(server, monkeypatch):
    where, handler = server
    port = where.split(":")[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda host, *a, **kw: real("127.0.0.2" if host == "cdn.example" else host, *a, **kw)
    )  # a public-looking name, a private address
    handler.redirects.update(
        {"/to-host": f"http://10.9.9.9:{port}/cat.png", "/to-name": f"http://cdn.example:{port}/cat.png"}
    )
    runner, _ = service(remote_urls=["127.0.0.1", "*.example"])
    with pytest.raises(MediaRefused, match=r"redirects to http://10\.9\.9\.9.*host 10\.9\.9\.9 is not one the media"):
        ask(runner, f"http://{where}/to-host")
    with pytest.raises(MediaRefused, match=r"cdn\.example resolves to 127\.0\.0\.2, a loopback address"):
        ask(runner, f"http://{where}/to-name")
    assert handler.requests == ["/to-host", "/to-name"]


@pytest.mark.parametrize(
    "address, allowed",
    [
        ("8.8.8.8", True),
        ("10.1.2.3", False),
        ("192.168.0.9", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fe80::1", False),
        ("2001:4860:4860::8888", True),
    ],
)
def test_which_addresses_are_private(address, allowed):
    policy = MediaPolicy()
    if allowed:
        policy.check_address("host", address)
    else:
        with pytest.raises(MediaRefused, match="address, which the media policy refuses unless named"):
            policy.check_address("host", address)
        MediaPolicy(
            remote_urls=[
                "example.com",
                "10.0.0.0/8",
                "169.254.169.254",
                "::1",
                "127.0.0.0/8",
                "fe80::/10",
                "192.168.0.0/16",
            ]
        ).check_address("host", address)  # named: allowed


# --- sizes ---------------------------------------------------------------------------------


def test_bytes_per_part(media, server, no_reads):
    where, handler = server
    size = (media / "cat.png").stat().st_size
    runner, _ = service(local_files=True, remote_urls=["127.0.0.1"], max_bytes=size - 1)
    with pytest.raises(
        MediaRefused, match=rf"is {size} bytes, more than the media policy allows per part \(max_bytes="
    ):
        ask(runner, str(media / "cat.png"))
    assert no_reads == []
    with pytest.raises(MediaRefused, match=r"larger than the \d+ bytes the media policy allows per part \(max_bytes="):
        ask(runner, f"http://{where}/cat.png")
    inline = "data:image/png;base64," + base64.b64encode((media / "cat.png").read_bytes()).decode()
    with pytest.raises(MediaRefused, match=r"per part \(max_bytes="):
        ask(runner, inline)


def test_bytes_per_request(media, server):
    where, _ = server
    size = (media / "cat.png").stat().st_size
    policy = dict(local_files=True, remote_urls=["127.0.0.1"], max_request_bytes=size + 10)
    runner, engine = service(**policy)
    assert ask(runner, str(media / "cat.png")).startswith("[image")  # each request starts afresh
    assert ask(runner, f"http://{where}/cat.png").startswith("[image")
    assert len(engine.calls) == 2
    runner, engine = service(**policy)  # a fresh Runner: nothing decoded yet, so every part is read
    with pytest.raises(MediaRefused, match=r"the rest of this request \(max_request_bytes="):
        ask(runner, str(media / "cat.png"), f"http://{where}/cat.png")
    runner, engine = service(**policy)
    with pytest.raises(MediaRefused, match=r"left of the media policy's bytes per request \(max_request_bytes="):
        ask(runner, f"http://{where}/cat.png", str(media / "cat.png"))
    assert engine.calls == []


def test_policy_keyword_and_media_options_together(media):
    runner = Runner(engine=FakeEngine(), media=MediaOptions(image_max_side=32), policy=MediaPolicy(local_files=[media]))
    assert ask(runner, str(media / "cat.png")).startswith("[image 32x21")
    with pytest.raises(MediaRefused):
        ask(runner, str(media.parent / "secret.png"))
