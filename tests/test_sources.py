"""sources.py: every URL form gives the same bytes; kind comes from content; failures say what to do.

Which bytes are which kind is test_sniff.py's subject; here, only that every form fills it in.
"""

from __future__ import annotations

import base64
import http.server
import io
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import pytest

from mmchat.errors import SourceError
from mmchat.inputs.sources import Source, read_source


def _png() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


# --- every form gives the same bytes --------------------------------------------------------


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "my photo.png"
    path.write_bytes(PNG)
    return path


def test_plain_path(png_file: Path) -> None:
    src = read_source(str(png_file))
    assert (src.data, src.kind, src.mime, src.label) == (PNG, "image", "image/png", str(png_file))


def test_home_relative_path(png_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(png_file.parent))
    src = read_source("~/my photo.png")
    assert src.data == PNG and src.label == "~/my photo.png"


def test_file_url_is_percent_decoded(png_file: Path) -> None:
    url = png_file.as_uri()
    assert "%20" in url
    src = read_source(url)
    assert src.data == PNG and src.kind == "image" and src.label == str(png_file)


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "data:;base64," + base64.b64encode(PNG).decode(),
        "data:application/octet-stream;base64," + base64.b64encode(PNG).decode(),
        "data:image/png;base64," + base64.encodebytes(PNG).decode(),  # wrapped at 76 columns
        "data:image/png;base64," + base64.b64encode(PNG).decode().rstrip("="),  # padding lost
        "data:image/png;base64," + urllib.parse.quote(base64.b64encode(PNG).decode(), safe=""),
        "data:," + urllib.parse.quote_from_bytes(PNG),
    ],
    ids=["base64", "no-mediatype", "wrong-mediatype", "wrapped", "unpadded", "escaped", "percent"],
)
def test_data_urls(url: str) -> None:
    src = read_source(url)
    assert (src.data, src.kind, src.mime, src.label) == (PNG, "image", "image/png", "data: URL")


def test_data_url_declared_type_is_kept_for_unknown_bytes() -> None:
    src = read_source("data:text/plain,hello%20world")
    assert (src.data, src.kind, src.mime) == (b"hello world", None, "text/plain")


def test_stdin_dash() -> None:
    src = read_source("-", stdin=io.BytesIO(PNG))
    assert (src.data, src.kind, src.label) == (PNG, "image", "stdin")


def test_source_repr_does_not_dump_the_bytes() -> None:
    assert "data=" not in repr(read_source("-", stdin=io.BytesIO(PNG)))


# --- kind comes from the bytes, not the name -----------------------------------------------


def test_png_named_mp3_is_an_image(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(PNG)
    assert read_source(str(path)).kind == "image"


def test_text_named_jpg_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("not really a photo\n")
    src = read_source(str(path))
    assert (src.kind, src.mime) == (None, None)


# --- local failures ----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^file not found: .*photo\.jpg: check the path$"):
        read_source(str(tmp_path / "photo.jpg"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        read_source(str(tmp_path))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.png is empty"):
        read_source(str(tmp_path / "empty.png"))


def test_file_over_the_limit(png_file: Path) -> None:
    with pytest.raises(SourceError, match="larger than the 10 bytes limit"):
        read_source(str(png_file), max_bytes=10)


def test_empty_stdin() -> None:
    with pytest.raises(SourceError, match="stdin"):
        read_source("-", stdin=io.BytesIO(b""))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,iVBOR@@@w0KGgo", "invalid base64"),
        ("data:image/png;base64", "malformed data: URL"),
        ("data:;base64,", "holds no bytes"),
        ("ftp://example.com/photo.png", "unsupported URL scheme 'ftp:'"),
        ("file://otherhost/photo.png", "another host"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_source(url)


def test_messages_are_one_line(tmp_path: Path) -> None:
    for bad in (str(tmp_path / "nope.png"), "data:x;base64,!!", str(tmp_path)):
        with pytest.raises(SourceError) as info:
            read_source(bad)
        assert "\n" not in str(info.value)


# --- HTTP, against a local server ---------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path
        if path in ("/photo.png", "/song.mp3"):
            self._send(200, PNG, "image/png")
        elif path == "/hop":
            self._redirect("/photo.png")
        elif path == "/loop":
            self._redirect("/loop")
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            self._redirect(f"/chain/{n + 1}")
        elif path == "/big":
            self._send(200, bytes(50_000), "application/octet-stream")
        elif path == "/big-unannounced":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the connection closes
            for _ in range(50):
                self.wfile.write(bytes(1000))
        elif path == "/empty":
            self._send(200, b"", "image/png")
        elif path == "/slow":
            time.sleep(1.0)
            self._send(200, PNG, "image/png")
        else:
            self._send(404, b"not here", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)  # shutdown() waits one poll
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_http_gives_the_same_bytes(server: str, png_file: Path) -> None:
    web = read_source(f"{server}/photo.png")
    assert web == Source(data=PNG, kind="image", label=f"{server}/photo.png", mime="image/png")
    assert web.data == read_source(str(png_file)).data


def test_http_kind_from_content_not_name(server: str) -> None:
    assert read_source(f"{server}/song.mp3").kind == "image"


def test_http_follows_a_redirect(server: str) -> None:
    assert read_source(f"{server}/hop").data == PNG


def test_http_404(server: str) -> None:
    url = f"{server}/missing.png"
    with pytest.raises(SourceError, match=rf"^HTTP 404 from {url}: check the URL$"):
        read_source(url)


def test_http_redirect_loop(server: str) -> None:
    with pytest.raises(SourceError, match="too many redirects"):
        read_source(f"{server}/loop")


def test_http_redirect_limit(server: str) -> None:
    with pytest.raises(SourceError, match=r"too many redirects \(more than 3\)"):
        read_source(f"{server}/chain/0", max_redirects=3)
    with pytest.raises(SourceError, match="too many redirects"):
        read_source(f"{server}/hop", max_redirects=0)


def test_http_oversize_by_content_length(server: str) -> None:
    with pytest.raises(SourceError, match=r"/big is larger than the 10000 bytes limit \(50000 bytes\)"):
        read_source(f"{server}/big", max_bytes=10_000)


def test_http_oversize_while_streaming(server: str) -> None:
    with pytest.raises(SourceError, match="big-unannounced is larger than the 10000 bytes limit"):
        read_source(f"{server}/big-unannounced", max_bytes=10_000)


def test_http_empty_body(server: str) -> None:
    with pytest.raises(SourceError, match="empty response"):
        read_source(f"{server}/empty")


def test_http_timeout(server: str) -> None:
    with pytest.raises(SourceError, match=r"timed out after 0.2 s"):
        read_source(f"{server}/slow", timeout=0.2)


def test_http_progress_reports_growth_to_the_total(server: str) -> None:
    seen: list[tuple[int, int | None]] = []
    read_source(f"{server}/big", progress=lambda label, done, total: seen.append((done, total)))
    assert seen[0] == (0, 50_000) and seen[-1] == (50_000, 50_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    seen.clear()
    read_source(f"{server}/big-unannounced", progress=lambda label, done, total: seen.append((done, total)))
    assert seen[-1] == (50_000, None)


def test_connection_refused_names_the_host() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there
    with pytest.raises(SourceError, match=r"could not connect to 127\.0\.0\.1"):
        read_source(f"http://127.0.0.1:{port}/photo.png", timeout=2)
