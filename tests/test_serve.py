"""`mmchat serve` as a process on the tiny models, driven by real clients: the openai and anthropic SDKs,
curl and `mmchat ask --base-url`; prefix reuse, the encoded-media cache, a disconnect, SIGTERM."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import threading
import time

import anthropic
import httpx
import openai
import pytest

from tests.support.helpers import GREEDY_ARGS, model_args, run_mmchat
from tests.support.mediafiles import noise_png, tone_wav
from tests.support.serving import KEY, serve_process
from tests.support.videofiles import write_video

pytestmark = pytest.mark.model
GREEDY = {"temperature": 0, "max_tokens": 10}


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """One server for the module's read-only tests (each request is a conversation of its own)."""
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    with serve_process(models, "--api-key", KEY, log=log) as (url, _):
        yield url, log


def data_url(path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def image_message(url: str, text: str = "Describe it.") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}
    ]


def test_the_openai_sdk_streamed_and_not_gives_the_same_greedy_answer_about_an_image(server, tmp_path):
    url, _ = server
    photo = data_url(noise_png(tmp_path / "p.png"), "image/png")
    sdk = client(url)
    whole = sdk.chat.completions.create(model="llm", messages=image_message(photo), **GREEDY)
    chunks = list(
        sdk.chat.completions.create(
            model="llm", messages=image_message(photo), stream=True, stream_options={"include_usage": True}, **GREEDY
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.choices[0].message.content == streamed and len(streamed) > 0
    assert whole.usage.completion_tokens == chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens > 10  # the image's tokens counted


def test_audio_as_input_audio_and_a_video_with_its_own_sampling(server, tmp_path):
    url, _ = server
    sdk = client(url)
    wav = base64.b64encode(tone_wav(tmp_path / "t.wav", seconds=2).read_bytes()).decode()
    heard = sdk.chat.completions.create(
        model="llm",
        messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]}
        ],
        **GREEDY,
    )
    video = data_url(write_video(tmp_path / "v.mp4", seconds=4, fps=10), "video/mp4")

    def frames(**sampling) -> int:
        part = {"type": "video_url", "video_url": {"url": video, **sampling}}
        reply = sdk.chat.completions.create(model="llm", messages=[{"role": "user", "content": [part]}], **GREEDY)
        assert reply.choices[0].message.content
        return reply.usage.prompt_tokens_details.model_dump()["image_tokens"]

    two, four = frames(fps=0.5), frames(fps=1, max_frames=4)
    assert heard.usage.prompt_tokens_details.audio_tokens > 0 and heard.choices[0].message.content
    assert four == 2 * two > 0  # per-part sampling: 4 frames cost twice 2


def test_a_json_schema_gives_json_that_follows_it(server):
    url, _ = server
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    reply = client(url).chat.completions.create(
        model="llm",
        messages=[{"role": "user", "content": "Is it ok?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}},
        temperature=0,
        max_tokens=32,
    )
    answer = json.loads(reply.choices[0].message.content)
    assert set(answer) == {"ok"} and isinstance(answer["ok"], bool)


def test_the_anthropic_sdk_streams_about_an_image_block(server, tmp_path):
    url, _ = server
    png = base64.b64encode(noise_png(tmp_path / "p.png").read_bytes()).decode()
    claude = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "Describe it."},
    ]
    with claude.messages.stream(
        model="llm", max_tokens=10, messages=[{"role": "user", "content": content}], extra_body={"temperature": 0}
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    whole = claude.messages.create(
        model="llm", max_tokens=10, messages=[{"role": "user", "content": content}], extra_body={"temperature": 0}
    )
    openai_side = client(url).chat.completions.create(
        model="llm", messages=image_message(data_url(tmp_path / "p.png", "image/png")), **GREEDY
    )
    assert text == final.content[0].text == whole.content[0].text == openai_side.choices[0].message.content
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 10


def test_curl_streamed_and_not(server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    url, _ = server
    body = json.dumps({"model": "llm", "messages": [{"role": "user", "content": "hi"}], **GREEDY})
    common = ["curl", "-sS", "-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json"]
    whole = subprocess.run([*common, f"{url}/v1/chat/completions", "-d", body], capture_output=True, timeout=60)
    streamed = subprocess.run(
        [*common, "-N", f"{url}/v1/chat/completions", "-d", json.dumps({**json.loads(body), "stream": True})],
        capture_output=True,
        timeout=60,
    )
    refused = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/v1/models"], capture_output=True
    )
    lines = [line[6:] for line in streamed.stdout.decode().splitlines() if line.startswith("data: ")]
    text = "".join(json.loads(line)["choices"][0]["delta"].get("content", "") for line in lines[:-1])
    assert json.loads(whole.stdout)["choices"][0]["message"]["content"] == text and lines[-1] == "[DONE]"
    assert refused.stdout == b"401"


def test_a_follow_up_evaluates_only_its_new_tokens(server, tmp_path):
    url, _ = server
    sdk = client(url)
    first = image_message(data_url(noise_png(tmp_path / "f.png", seed=5), "image/png"))
    one = sdk.chat.completions.create(model="llm", messages=first, **GREEDY)
    follow = [
        *first,
        {"role": "assistant", "content": one.choices[0].message.content},
        {"role": "user", "content": "And?"},
    ]
    two = sdk.chat.completions.create(model="llm", messages=follow, **GREEDY)
    cached = two.usage.prompt_tokens_details.cached_tokens
    assert one.usage.prompt_tokens <= cached < two.usage.prompt_tokens  # the first prompt and its answer, reused
    assert two.usage.prompt_tokens_details.model_dump()["encoded_media"] == 0


def test_alternating_conversations_each_get_their_own_prefix_back(models, tmp_path):
    """Two conversations about two photos, asked in turn: each one's next question restores its own
    saved KV state (issue 27 on issue 26's states), where before it evaluated its whole prompt again."""
    # a prompt past the 64 tokens a state must cover to be saved (config.DEFAULT_KV_STATE_MIN_TOKENS)
    words = " ".join(f"word{i}" for i in range(80))
    with serve_process(models, "--api-key", KEY, "--no-cache", log=tmp_path / "stderr.log") as (url, _):
        sdk = client(url)
        talks = [image_message(data_url(noise_png(tmp_path / f"{n}.png", seed=n), "image/png"), words) for n in (1, 2)]
        first = []
        for talk in talks:
            answer = sdk.chat.completions.create(model="llm", messages=talk, **GREEDY)
            talk += [{"role": "assistant", "content": answer.choices[0].message.content}]
            first.append(answer.usage.prompt_tokens)
        for talk, before in zip(talks, first):  # A, B, then A again: A's prefix left the live KV cache for B's
            talk += [{"role": "user", "content": "And the colours?"}]
            again = sdk.chat.completions.create(model="llm", messages=talk, **GREEDY)
            assert again.usage.prompt_tokens_details.cached_tokens >= before, again.usage  # its whole first turn


def test_the_same_greedy_answer_through_ask_base_url_as_in_process_media_included(models, tmp_path):
    photo, sound = noise_png(tmp_path / "p.png", seed=2), tone_wav(tmp_path / "t.wav", seconds=1)
    args = ["ask", "What is here?", "-i", str(photo), "-a", str(sound), *GREEDY_ARGS, "--no-log"]
    local = run_mmchat(*args, *model_args(models, "mmproj-omni", greedy=False))
    with serve_process(models, log=tmp_path / "serve.log") as (url, _):
        remote = run_mmchat(*args, "--base-url", url)
    assert local.returncode == remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and local.stdout.strip()


def test_an_image_encoded_by_ask_is_not_encoded_again_by_the_server(models, tmp_path):
    photo = noise_png(tmp_path / "p.png", seed=9)
    asked = run_mmchat(
        "ask",
        "hi",
        "-i",
        str(photo),
        *model_args(models, "mmproj-omni"),
        "--json",
    )
    assert json.loads(asked.stdout)["usage"]["prompt_tokens_details"]["encoded_media"] == 1
    with serve_process(models, log=tmp_path / "serve.log") as (url, _):
        reply = client(url).chat.completions.create(
            model="llm", messages=image_message(data_url(photo, "image/png"), "hi"), **GREEDY
        )
    assert reply.usage.prompt_tokens_details.model_dump()["encoded_media"] == 0  # found in the disk cache


def test_a_disconnect_mid_stream_leaves_the_model_answering_as_before(models, tmp_path):
    log = tmp_path / "serve.log"
    with serve_process(models, log=log) as (url, _):
        sdk = client(url)
        before = sdk.chat.completions.create(model="llm", messages=[{"role": "user", "content": "hi"}], **GREEDY)
        body = {
            "model": "llm",
            "messages": [{"role": "user", "content": "tell me"}],
            "max_tokens": 12000,
            "stream": True,
        }
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
            for n, _ in enumerate(response.iter_lines()):
                if n == 6:
                    break
        after = sdk.chat.completions.create(model="llm", messages=[{"role": "user", "content": "hi"}], **GREEDY)
    assert after.choices[0].message.content == before.choices[0].message.content
    assert '"POST /v1/chat/completions" 200' in log.read_text() and "(client gone)" in log.read_text()


def test_sigterm_finishes_the_request_in_flight_refuses_the_waiting_one_then_exits(models, tmp_path):
    log = tmp_path / "serve.log"
    with serve_process(models, log=log) as (url, proc):
        body = {
            "model": "llm",
            "messages": [{"role": "user", "content": "go"}],
            "max_tokens": 4000,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        lines: list[str] = []
        waiting: dict = {}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
            stream = response.iter_lines()
            lines.append(next(stream))  # the answer has begun
            queued = threading.Thread(
                target=lambda: waiting.update(
                    r=httpx.post(
                        f"{url}/v1/chat/completions", json={**body, "stream": False, "max_tokens": 2}, timeout=120
                    )
                )
            )
            queued.start()
            deadline = time.monotonic() + 10
            while '"waiting":1' not in httpx.get(f"{url}/health").text.replace(" ", "") and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            lines.extend(stream)
            queued.join()
        code = proc.wait(30)
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]" and json.loads(data[-3])["choices"][0]["finish_reason"] == "length"
    assert json.loads(data[-2])["usage"]["completion_tokens"] == 4000  # the whole answer, not cut short
    assert waiting["r"].status_code == 503 and "shutting down" in waiting["r"].json()["error"]["message"]
    assert code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


def test_conversations_are_logged_only_with_log(models, tmp_path):
    hi = [{"role": "user", "content": "remember this"}]
    with serve_process(models, log=tmp_path / "a.log") as (url, _):
        client(url).chat.completions.create(model="llm", messages=hi, **GREEDY)
    unlogged = run_mmchat("logs", "--json")
    with serve_process(models, "--log", log=tmp_path / "b.log") as (url, _):
        client(url).chat.completions.create(model="llm", messages=hi, **GREEDY)
    logged = run_mmchat("logs", "--json")
    assert "remember this" not in unlogged.stdout.decode()
    assert logged.returncode == 0 and "remember this" in logged.stdout.decode()
