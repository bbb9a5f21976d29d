"""`mmchat ask` as a user runs it: a subprocess, stdout a pipe, on the generated models."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from tests.support.helpers import GREEDY, THREADS, model_args, run_mmchat
from tests.support.mediafiles import noise_png, tone_wav


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    return noise_png(tmp_path_factory.mktemp("media") / "photo.png", seed=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory, png):
    """A local web server: /photo.png is the PNG, anything else is a 404."""
    root = tmp_path_factory.mktemp("www")
    (root / "photo.png").write_bytes(png.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()  # shutdown() waits one poll
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def vision_args(models):
    return model_args(models)


@pytest.fixture(scope="module")
def answer(vision_args, png):
    """The answer for the PNG given as a plain path: every other form must match it."""
    out = run_mmchat("ask", "What is this?", "--image", str(png), *vision_args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_stdout_carries_only_the_answer(models, vision_args, png, answer):
    from mmchat import Runner, image_part, text_part

    with Runner(models["llm"], models["mmproj-vision"], n_ctx=8192, threads=THREADS) as r:
        expected = r.chat(
            [{"role": "user", "content": [image_part(str(png)), text_part("What is this?")]}], **GREEDY
        ).content
    assert answer.decode() == expected + "\n"
    assert len(expected) > 0


def test_stderr_is_quiet_without_verbose(vision_args, png):
    out = run_mmchat("ask", "What is this?", "--image", str(png), *vision_args)
    assert out.returncode == 0 and out.stderr == b""
    noisy = run_mmchat("ask", "What is this?", "--image", str(png), "-v", *vision_args)
    assert noisy.stdout == out.stdout and b"llama" in noisy.stderr  # llama.cpp's log, on stderr only


@pytest.mark.parametrize("form", ["file_url", "data_url", "http", "stdin"])
def test_every_url_form_gives_the_same_answer(vision_args, png, answer, server, form):
    stdin = b""
    if form == "file_url":
        url = png.resolve().as_uri()
    elif form == "data_url":
        url = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    elif form == "http":
        url = f"{server}/photo.png"
    else:
        url, stdin = "-", png.read_bytes()
    out = run_mmchat("ask", "What is this?", "--image", url, *vision_args, stdin=stdin)
    assert out.returncode == 0, out.stderr
    assert out.stdout == answer


def test_media_keep_their_command_line_order(models, png, tmp_path):
    wav = tone_wav(tmp_path / "t.wav")
    args = [
        *model_args(models, "mmproj-omni"),
        "--json",
        "--no-cache",
    ]  # both runs encode both media, so their usage must match
    image_first = json.loads(run_mmchat("ask", "Hi", "--image", str(png), "--audio", str(wav), *args).stdout)
    audio_first = json.loads(run_mmchat("ask", "Hi", "-a", str(wav), "-i", str(png), *args).stdout)
    assert image_first["usage"] == audio_first["usage"]
    assert image_first["choices"][0]["message"]["content"] != audio_first["choices"][0]["message"]["content"]


def test_json_output_is_one_completion_object(vision_args, png, answer):
    out = run_mmchat("ask", "What is this?", "--image", str(png), "--json", *vision_args)
    data = json.loads(out.stdout)
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] + "\n" == answer.decode()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == GREEDY["max_tokens"]
    assert data["usage"]["prompt_tokens_details"]["image_tokens"] == 16
    assert data["timings"]["load_s"] > 0 and data["timings"]["generation_tokens_per_s"] > 0


def test_piped_text_reaches_the_model(models):
    args = [*model_args(models, None), "--json"]
    alone = json.loads(run_mmchat("ask", "Summarize.", *args).stdout)
    piped = json.loads(run_mmchat("ask", "Summarize.", *args, stdin=b"Some notes about the meeting.\n").stdout)
    assert piped["usage"]["prompt_tokens"] > alone["usage"]["prompt_tokens"] + 10


def _bad_inputs(tmp: Path, models) -> dict[str, tuple[list[str], str]]:
    (tmp / "dir").mkdir()
    (tmp / "empty.png").write_bytes(b"")
    png = noise_png(tmp / "full.png").read_bytes()
    (tmp / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp / "notes.jpg").write_bytes(b"\x00\x9f" + os.urandom(2048))  # neither media nor text
    (tmp / "text.jpg").write_text("just some text, not a picture\n")  # the case issue 24 brought back
    (tmp / "notes.txt").write_text("just some text, not a picture\n")
    (tmp / "random.gguf").write_bytes(os.urandom(4096))
    wav = tone_wav(tmp / "talk.wav")
    return {
        "missing file": (["--image", str(tmp / "nope.png")], "nope.png"),
        "directory": (["--image", str(tmp / "dir")], "dir"),
        "empty file": (["--image", str(tmp / "empty.png")], "empty.png"),
        "truncated png": (["--image", str(tmp / "truncated.png")], "truncated.png"),
        "binary named .jpg": (["--image", str(tmp / "notes.jpg")], "notes.jpg"),
        "text named .jpg": (["--image", str(tmp / "text.jpg")], "text.jpg"),
        "text named .jpg, given with -i": (["-i", str(tmp / "text.jpg")], "text.jpg"),
        "a text file given as an image": (["--image", str(tmp / "notes.txt")], "notes.txt"),
        "audio to a vision model": (["--audio", str(wav)], "audio"),
        "bad base64": (["--image", "data:image/png;base64,@@@not-base64@@@"], "base64"),
        "mmproj as the model": (["--model", str(models["mmproj-vision"])], "mmproj-vision.gguf"),
        "not a gguf": (["--model", str(tmp / "random.gguf")], "random.gguf"),
    }


def test_bad_input_exits_2_with_one_clear_line(models, vision_args, tmp_path, server):
    cases = _bad_inputs(tmp_path, models)
    cases["http 404"] = (["--image", f"{server}/missing.png"], "404")
    for name, (args, needle) in cases.items():
        out = run_mmchat("ask", "What is this?", *vision_args, *args)
        err = out.stderr.decode()
        assert out.returncode == 2, f"{name}: exit {out.returncode}, stderr {err!r}"
        assert out.stdout == b"", name
        assert err.count("\n") == 1 and err.startswith("mmchat: error: "), f"{name}: {err!r}"
        assert needle in err and "Traceback" not in err, f"{name}: {err!r}"
