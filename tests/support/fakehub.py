"""A local stand-in for huggingface.co, so pulls are tested without the internet.

It answers what huggingface_hub 1.x/2.x asks for when listing a repository and downloading a file:

    GET  /api/models/{owner}/{name}[/revision/{rev}]      model_info: siblings; with ?blobs=true (files_metadata)
                                                          also their size, git blob id and LFS sha256
    GET  /api/models/{owner}/{name}/tree/{rev}[/{path}]   list_repo_tree / list_repo_files
    HEAD /{owner}/{name}/resolve/{rev}/{file}             hf_hub_download's metadata: ETag, X-Repo-Commit,
                                                          Content-Length, Accept-Ranges
    GET  /{owner}/{name}/resolve/{rev}/{file}             the bytes; honours `Range: bytes=N-[M]` (206)

A repository's files are bytes, or `Listed(size, sha256)` stand-ins for real multi-GB files: listed
with the size and hash the Hub gives (tests/support/hub_listings.py writes the real repositories' listings
from published evidence), never served (a GET of one is a 409 naming it, so a test that downloads
a file it did not expect fails). As on the Hub, .gguf files are LFS files (listed with an `lfs`
sha256) and small text files live in git (a blob id only).

Unknown repositories and files get 404 with the X-Error-Code header the Hub sends. `drop_once`
names files whose next GET is cut off halfway (headers promise the whole file, the socket closes),
which is how a flaky network looks to the client; `stall` names files whose GETs send half and
then hang until `released` is set, so a test can kill the downloading process mid-file; `corrupt`
names files served with one byte flipped while the metadata still describes the true file (a bad
proxy or disk on the way).

    with FakeHub({"org/m-GGUF": {"m-Q4_K_M.gguf": b"..."}}) as hub:
        use_hub(monkeypatch, hub.url, tmp_path / "hf")
        ...
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Listed:
    """A file the Hub lists but a test never downloads: its size in bytes and, where a project
    pins it, its real sha256 (else one made from the name)."""

    size: int
    sha256: str = ""


File = bytes | Listed


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, File]] | None = None, *, commit: str = COMMIT):
        self.repos: dict[str, dict[str, File]] = dict(repos or {})
        self.commit = commit
        self.drop_once: set[str] = set()
        self.stall: set[str] = set()  # GETs of these send half the file, then hang until `released`
        self.corrupt: set[str] = set()  # GETs of these serve the middle byte flipped
        self.released = threading.Event()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def range_requests(self, filename: str) -> list[str]:
        """The Range headers of GETs for `filename` (a resumed download sends one)."""
        return [h["range"] for m, p, h in self.requests if m == "GET" and p.endswith("/" + filename) and "range" in h]

    def _log(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, headers))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(name: str, data: File) -> dict[str, Any]:
    """What the Hub says of one file: size, git blob id, and for an LFS file (a .gguf) its sha256."""
    if isinstance(data, Listed):
        size, sha256, blob = data.size, data.sha256 or _sha256(name.encode()), _git_sha1(name.encode())
    else:
        size, sha256, blob = len(data), _sha256(data), _git_sha1(data)
    lfs = {"size": size, "sha256": sha256, "pointerSize": 134} if name.lower().endswith(".gguf") else None
    return {"size": size, "blobId": blob, "lfs": lfs}


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK wait

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        # -- routing -----------------------------------------------------------------------

        def _route(self, *, head: bool) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(url.path)
            blobs = urllib.parse.parse_qs(url.query).get("blobs", [""])[0].lower() == "true"
            hub._log(self.command, path, {k.lower(): v for k, v in self.headers.items()})
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
                self._tree(m.group(1), m.group(3) or "")
            elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                self._info(m.group(1), blobs=blobs)
            elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                self._file(m.group(1), m.group(3), head=head)
            else:
                self._error(404, "Not found", None)

        def _repo(self, repo: str) -> dict[str, File] | None:
            files = hub.repos.get(repo)
            if files is None:
                self._error(404, "Repository not found", "RepoNotFound")
            return files

        # -- API ---------------------------------------------------------------------------

        def _info(self, repo: str, *, blobs: bool) -> None:
            if (files := self._repo(repo)) is None:
                return
            siblings = []
            for name, data in sorted(files.items()):
                sibling: dict[str, Any] = {"rfilename": name}
                if blobs:  # the Hub sends sizes and hashes only when asked
                    entry = _entry(name, data)
                    sibling.update(size=entry["size"], blobId=entry["blobId"])
                    if entry["lfs"]:
                        sibling["lfs"] = entry["lfs"]
                siblings.append(sibling)
            self._json(
                {
                    "_id": "0" * 24,
                    "id": repo,
                    "modelId": repo,
                    "author": repo.split("/")[0],
                    "sha": hub.commit,
                    "private": False,
                    "gated": False,
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": ["gguf"],
                    "library_name": "gguf",
                    "lastModified": "2025-01-01T00:00:00.000Z",
                    "createdAt": "2025-01-01T00:00:00.000Z",
                    "siblings": siblings,
                }
            )

        def _tree(self, repo: str, prefix: str) -> None:
            if (files := self._repo(repo)) is None:
                return
            prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
            entries = []
            for name, data in sorted(files.items()):
                if name.startswith(prefix):
                    entry = _entry(name, data)
                    item = {"type": "file", "path": name, "size": entry["size"], "oid": entry["blobId"]}
                    if entry["lfs"]:
                        item["lfs"] = {"oid": entry["lfs"]["sha256"], "size": entry["size"], "pointerSize": 134}
                    entries.append(item)
            self._json(entries)

        # -- files -------------------------------------------------------------------------

        def _file(self, repo: str, filename: str, *, head: bool) -> None:
            if (files := self._repo(repo)) is None:
                return
            data = files.get(filename)
            if data is None:
                self._error(404, "Entry not found", "EntryNotFound")
                return
            if isinstance(data, Listed):  # a test downloads a file it gave no bytes for
                self._error(409, f"{filename} is only listed in this fake hub: the test gave no bytes for it", None)
                return
            start, end = 0, len(data) - 1
            status = 200
            if not head and (rng := self.headers.get("Range")):
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                if m is None or int(m.group(1)) >= len(data):
                    self._error(416, "Range not satisfiable", None)
                    return
                start = int(m.group(1))
                end = min(int(m.group(2)), end) if m.group(2) else end
                status = 206
            body = data[start : end + 1]
            if filename in hub.corrupt and start <= len(data) // 2 <= end:
                flip = len(data) // 2 - start
                body = body[:flip] + bytes([body[flip] ^ 0xFF]) + body[flip + 1 :]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{_sha256(data)}"')
            self.send_header("X-Repo-Commit", hub.commit)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if head:
                return
            if filename in hub.stall and status == 200:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                hub.released.wait(30)  # the client is killed meanwhile, as a closed laptop would be
                self.close_connection = True
                return
            if filename in hub.drop_once and status == 200:
                hub.drop_once.discard(filename)
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True  # the server closes the socket: the body ends early
                return
            self.wfile.write(body)

        # -- helpers -----------------------------------------------------------------------

        def _json(self, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Repo-Commit", hub.commit)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, code: str | None) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def use_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> Path:
    """Point huggingface_hub at `endpoint` with its cache under `hf_home`; returns the hub cache dir.

    huggingface_hub reads HF_ENDPOINT / HF_HOME / HF_HUB_CACHE once, at import, so the environment
    is set (for subprocesses) and its constants are patched (for this process).
    """
    from huggingface_hub import constants

    cache = hf_home / "hub"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    patches = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": False,
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
    }
    for name, value in patches.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    _no_resume_pause(monkeypatch)
    return cache


def _no_resume_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub sleeps a fixed second before it resumes a cut download (in this process: a
    subprocess still waits); the fake hub is ready at once, so the resume is asked for straight away."""
    import time
    import types

    from huggingface_hub import file_download

    if getattr(file_download, "time", None) is time:
        quick = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
        quick.sleep = lambda seconds: None
        monkeypatch.setattr(file_download, "time", quick)


def put_in_cache(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Lay files out the way hf_hub_download leaves them (blobs, a snapshot of symlinks, refs/main)."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / COMMIT
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob.name)
    return snapshot


def closed_port() -> str:
    """An http:// URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
