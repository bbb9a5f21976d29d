"""OpenAI-compatible servers as the backend, against the stub server (tests/support/stubserver.py).

What a real server cannot show on demand: SGLang's audio dialect, llama-server's /props,
429/500 retries, refusals, a slow and a dead server, what is (and is not) sent.
test_remote_server.py runs the same path against llama-cpp-python's real server.
"""

from __future__ import annotations

import base64
import io
import json

import pytest

from mmchat import Runner, ServerError, ServerRefused, UnsupportedMedia
from tests.support.helpers import invoke_real, warned
from tests.support.mediafiles import noise_png, tone_wav
from tests.support.stubserver import Reply, Stub, echo, serve


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "photo.png", size=(40, 30))


@pytest.fixture
def wav(tmp_path):
    return tone_wav(tmp_path / "talk.wav", seconds=1.0)


def test_an_answer_streams_from_the_server_and_the_model_is_the_one_it_lists(png):
    with serve() as stub:
        result = invoke_real("ask", "what is it", "-i", str(png), "--base-url", stub.url, "-t", "0", "-n", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout == "what is it [1 media]\n"
    body = stub.chats[0]
    assert body["model"] == "stub-model" and body["stream"] is True
    assert (body["temperature"], body["max_tokens"]) == (0, 7)


def test_media_go_as_decoded_data_urls_in_order_and_local_paths_never_leave(png, wav):
    with serve(Stub(props={"modalities": {"vision": True, "audio": True}})) as stub:
        result = invoke_real("ask", "compare", "-a", str(wav), "-i", str(png), "--base-url", stub.url + "/v1")
    assert result.exit_code == 0, result.output
    parts = stub.chats[0]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["input_audio", "image_url", "text"]
    image = parts[1]["image_url"]["url"]
    assert image.startswith("data:image/png;base64,")
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(image.split(",", 1)[1]))) as sent:
        assert sent.size == (40, 30) and sent.mode == "RGB"  # decoded here, sent lossless
    wav_bytes = base64.b64decode(parts[0]["input_audio"]["data"])
    assert wav_bytes[:4] == b"RIFF" and parts[0]["input_audio"]["format"] == "wav"
    assert str(png.parent) not in json.dumps(stub.chats[0])


def test_sglang_gets_audio_as_an_audio_url(wav):
    with serve(Stub(models=[{"id": "qwen-omni", "owned_by": "sglang"}])) as stub:
        result = invoke_real("ask", "transcribe", "-a", str(wav), "--base-url", stub.url)
    assert result.exit_code == 0, result.output
    part = stub.chats[0]["messages"][-1]["content"][0]
    assert part["type"] == "audio_url" and part["audio_url"]["url"].startswith("data:audio/wav;base64,")


def test_a_kind_the_server_lacks_is_refused_before_anything_is_read_or_sent(tmp_path):
    missing = tmp_path / "never-read.png"  # does not exist: a read would say "not found"
    with serve(Stub(props={"modalities": {"vision": False, "audio": True}})) as stub:
        result = invoke_real("ask", "what", "-i", str(missing), "--base-url", stub.url)
    assert result.exit_code == 2
    assert "takes audio, not images" in result.stderr and "not found" not in result.stderr
    assert stub.chats == []


def test_modalities_from_the_flag_when_the_server_does_not_say(wav):
    with serve() as stub:  # no /props
        result = invoke_real("ask", "what", "-a", str(wav), "--base-url", stub.url, "--modalities", "image")
    assert result.exit_code == 2 and "not audio" in result.stderr
    assert stub.chats == []


def test_busy_and_failing_servers_are_asked_again_with_backoff():
    def busy_twice(body, attempt):
        if attempt < 2:
            return Reply(status=429 if attempt == 0 else 503, error="busy", headers={"Retry-After": "0"})
        return echo(body, attempt)

    with serve(Stub(reply=busy_twice)) as stub:
        result = invoke_real("ask", "hello there", "--base-url", stub.url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello there\n" and len(stub.chats) == 3
    assert "HTTP 429" in result.stderr and "HTTP 503" in result.stderr


def test_a_server_that_keeps_failing_is_one_line_and_exit_1_after_bounded_retries():
    with serve(
        Stub(reply=lambda b, a: Reply(status=500, error="CUDA out of memory", headers={"Retry-After": "0"}))
    ) as stub:
        result = invoke_real("ask", "hello", "--base-url", stub.url, "-q")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"mmchat: error: the server at {stub.url}/v1/chat/completions failed (HTTP 500) after 4 tries: CUDA out of memory"
    ]
    assert len(stub.chats) == 4  # the first try and three retries


def test_a_refusal_is_the_servers_own_message_and_exit_2():
    with serve(Stub(reply=lambda b, a: Reply(status=400, error="max_tokens must be at most 4096"))) as stub:
        result = invoke_real("ask", "hello", "--base-url", stub.url)
    assert result.exit_code == 2
    assert "refused the request (HTTP 400): max_tokens must be at most 4096" in result.stderr
    assert len(stub.chats) == 1  # a refusal is not retried


def test_a_slow_server_meets_the_timeout():
    with serve(Stub(reply=lambda b, a: Reply(text="late", delay=3))) as stub:
        result = invoke_real("ask", "hello", "--base-url", stub.url, "--timeout", "0.2")
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"mmchat: error: the server at {stub.url}/v1/chat/completions did not answer within 0.2 s (--timeout)"
    )


def test_a_dead_server_is_one_line_naming_the_url():
    with serve() as stub:
        url = stub.url
    result = invoke_real("ask", "hello", "--base-url", url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"mmchat: error: cannot reach the server at {url}/v1/models")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_url_and_key_come_from_the_environment_and_a_registry_entry_names_the_servers_model(wav):
    from mmchat.models import registry

    with serve(Stub(models=[{"id": "a"}, {"id": "big-omni"}])) as stub:
        registry.user_file().parent.mkdir(parents=True, exist_ok=True)
        registry.user_file().write_text(
            f'[models."gpu-box"]\nbase_url = "{stub.url}"\nserver_model = "big-omni"\nmodalities = ["audio"]\n'
        )
        by_env = invoke_real("ask", "hi", environ={"MMCHAT_BASE_URL": stub.url, "OPENAI_API_KEY": "sk-test"})
        by_name = invoke_real("ask", "hi", "-a", str(wav), "--model", "gpu-box")
        # issue 24: -i tells a file's kind by its content (this WAV is audio); --image declares an image
        refused = invoke_real("ask", "hi", "--image", str(wav), "--model", "gpu-box")
    assert by_env.exit_code == 0 and by_name.exit_code == 0, by_env.output + by_name.output
    assert stub.headers[0]["Authorization"] == "Bearer sk-test"
    assert stub.chats[0]["model"] == "a" and stub.chats[1]["model"] == "big-omni"
    assert refused.exit_code == 2 and "not images" in refused.stderr  # the entry's modalities


def test_mmchat_api_key_wins_over_openai_api_key_and_the_flag_over_both(monkeypatch):
    keys = {"MMCHAT_API_KEY": "mm-key", "OPENAI_API_KEY": "openai-key"}
    with serve() as stub:
        by_env = invoke_real("ask", "hi", "--base-url", stub.url, environ=keys)
        by_flag = invoke_real("ask", "hi", "--base-url", stub.url, "--api-key", "flag-key", environ=keys)
        for name, value in keys.items():
            monkeypatch.setenv(name, value)
        with Runner(base_url=stub.url) as runner:  # the Python API reads the same variables
            runner.chat([{"role": "user", "content": "hi"}])
    assert by_env.exit_code == by_flag.exit_code == 0, by_env.output + by_flag.output
    assert [h["Authorization"] for h in stub.headers] == ["Bearer mm-key", "Bearer flag-key", "Bearer mm-key"]


def test_mmchat_model_chooses_the_model_when_no_flag_does(tmp_path):
    """The command's environment (its Environment's, the process's for a user) names the model."""
    from mmchat.models import registry

    missing = tmp_path / "missing.gguf"
    with serve(Stub(models=[{"id": "a"}, {"id": "big-omni"}])) as stub:
        registry.user_file().parent.mkdir(parents=True, exist_ok=True)
        registry.user_file().write_text(f'[models."gpu-box"]\nbase_url = "{stub.url}"\nserver_model = "big-omni"\n')
        by_env = invoke_real("ask", "hi", environ={"MMCHAT_MODEL": "gpu-box"})
        by_flag = invoke_real(
            "ask", "hi", "--model", str(missing), environ={"MMCHAT_MODEL": "gpu-box"}
        )  # the flag wins
        by_env_path = invoke_real("ask", "hi", environ={"MMCHAT_MODEL": str(missing)})
    assert by_env.exit_code == 0 and by_env.stdout == "hi\n", by_env.output
    assert [c["model"] for c in stub.chats] == ["big-omni"]
    assert by_flag.exit_code == by_env_path.exit_code == 2
    assert by_flag.stderr == by_env_path.stderr == f"mmchat: error: model file not found: {missing}\n"


def test_runner_takes_a_base_url_and_reports_the_servers_usage(png):
    usage = {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23}
    with serve(Stub(reply=lambda b, a: Reply(text="a cat", usage=usage))) as stub:
        with Runner(base_url=stub.url, api_key="k", timeout=5) as runner:
            reply = runner.chat(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": str(png)}},
                            {"type": "text", "text": "what?"},
                        ],
                    }
                ],
                temperature=0,
            )
    assert reply.content == "a cat"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (21, 2)
    assert stub.headers[0]["Authorization"] == "Bearer k"


def test_runner_errors_are_the_classes_a_script_catches(png):
    with serve(
        Stub(
            props={"modalities": {"vision": False, "audio": False}},
            reply=lambda b, a: Reply(status=401, error="bad key"),
        )
    ) as stub:
        with Runner(base_url=stub.url) as runner:
            with pytest.raises(UnsupportedMedia):
                runner.chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(png)}}]}])
            with pytest.raises(ServerRefused, match="check --api-key"):
                runner.chat([{"role": "user", "content": "hi"}])
        url = stub.url
    with pytest.raises(ServerError, match="cannot reach"):
        Runner(base_url=url)


def test_the_repl_talks_to_a_server_and_sends_the_whole_conversation_each_turn(png):
    with serve() as stub:
        result = invoke_real("chat", "--base-url", stub.url, input=f"/attach {png}\nfirst question\nsecond one\n")
    assert result.exit_code == 0, result.output
    assert "first question [1 media]" in result.stdout and "second one" in result.stdout
    second = stub.chats[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[0]["content"][0]["type"] == "image_url"  # the image stays in the conversation


def test_the_servers_own_token_counts_and_times_are_reported():
    timings = {"prompt_n": 12, "prompt_ms": 250.0, "predicted_n": 2, "predicted_ms": 500.0}
    with serve(Stub(reply=lambda b, a: Reply(text="ok then", timings=timings))) as stub:
        result = invoke_real("ask", "hi", "--base-url", stub.url, "--json")
    data = json.loads(result.stdout)
    assert (data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"]) == (12, 2)
    assert (data["timings"]["prompt_s"], data["timings"]["generation_s"]) == (0.25, 0.5)
    assert data["timings"]["generation_tokens_per_s"] == 4.0


def test_a_registry_entry_on_a_server_is_listed_as_such_runs_from_python_and_is_not_pulled():
    from mmchat.models import registry

    with serve(Stub(models=[{"id": "a"}, {"id": "big"}])) as stub:
        registry.user_file().parent.mkdir(parents=True, exist_ok=True)
        registry.user_file().write_text(f'[models."gpu-box"]\nbase_url = "{stub.url}"\nserver_model = "big"\n')
        with Runner("gpu-box") as runner:
            assert runner.chat([{"role": "user", "content": "hello you"}]).content == "hello you"
        listed = invoke_real("models", "--json")
        pulled = invoke_real("pull", "gpu-box")
    assert stub.chats[0]["model"] == "big"
    entry = next(e for e in json.loads(listed.stdout) if e["name"] == "gpu-box")
    assert entry["base_url"] == stub.url and entry["server_model"] == "big"
    assert pulled.exit_code == 2 and "runs on the server at" in pulled.stderr and "nothing to pull" in pulled.stderr


def test_without_retry_after_the_waits_grow():
    from mmchat.engine.base import Turn
    from mmchat.engine.remote import RemoteEngine
    from mmchat.options import GenerationOptions

    waits: list[float] = []
    failing = lambda body, attempt: Reply(status=502, error="bad gateway") if attempt < 3 else echo(body, attempt)  # noqa: E731
    with serve(Stub(reply=failing)) as stub:
        engine = RemoteEngine(stub.url, sleep=waits.append)
        text = "".join(e for e in engine.stream([Turn("user", ("hi",))], GenerationOptions()) if isinstance(e, str))
    assert text == "hi" and waits == [0.5, 1.0, 2.0]


def test_sound_too_long_for_the_servers_context_is_refused_from_its_length_unsent(tmp_path):
    long = tone_wav(tmp_path / "lecture.wav", seconds=400.0)  # 2048 tokens hold at most ~328 s of sound
    props = {"modalities": {"vision": False, "audio": True}, "default_generation_settings": {"n_ctx": 2048}}
    with serve(Stub(props=props)) as stub:
        result = invoke_real("ask", "summarize", "-a", str(long), "--base-url", stub.url)
        cut = invoke_real("ask", "summarize", "-a", str(long), "--base-url", stub.url, "--start", "0", "--end", "60")
    assert result.exit_code == 2 and "--start/--end" in result.stderr, result.output
    assert cut.exit_code == 0, cut.output
    assert len(stub.chats) == 1  # only the minute was sent


# -- options that cannot hold with a server are said, never dropped (issue 24) ---------------------


def test_an_mmproj_given_with_a_server_is_one_warning_and_the_server_answers(tmp_path):
    from mmchat.models import registry

    projector = str(tmp_path / "mmproj-x.gguf")
    with serve(Stub(models=[{"id": "a"}])) as stub:
        by_env = invoke_real("ask", "hi", "--mmproj", projector, environ={"MMCHAT_BASE_URL": stub.url})
        by_flag = invoke_real("ask", "hi", "--base-url", stub.url, "--mmproj", projector)
        registry.user_file().parent.mkdir(parents=True, exist_ok=True)
        registry.user_file().write_text(f'[models."gpu-box"]\nbase_url = "{stub.url}"\n')
        by_name = invoke_real("ask", "hi", "--model", "gpu-box", "--mmproj", projector)
    for result, source in ((by_env, "MMCHAT_BASE_URL"), (by_flag, "--base-url"), (by_name, "gpu-box")):
        assert result.exit_code == 0, result.output
        warning = [line for line in result.stderr.splitlines() if "mmproj" in line]
        assert len(warning) == 1 and f"--mmproj {projector} is not used" in warning[0] and source in warning[0]
    assert len(stub.chats) == 3


def test_which_beside_a_base_url_is_refused_and_beside_an_exported_one_is_said(monkeypatch):
    from pathlib import Path

    from mmchat import InputError, Which
    from mmchat.models import which
    from mmchat.models.target import Local, find_target

    pick = Which.MultimodalPlain(model_id="google/gemma-3-4b-it")
    with pytest.raises(InputError, match="which= names model files to load here and base_url="):
        Runner(which=pick, base_url="http://127.0.0.1:9")
    # the Hub is not asked here (tests/test_request_api.py pulls through a fake hub): only the choice is
    monkeypatch.setattr(which, "find_files", lambda *a, **k: which.Found(Path("m.gguf"), Path("mmproj-m.gguf")))
    with warned() as said:
        target = find_target(which=pick, environ={"MMCHAT_BASE_URL": "http://127.0.0.1:9"})
    assert isinstance(target, Local) and said == [
        "MMCHAT_BASE_URL (http://127.0.0.1:9) is not used: which= names model files, loaded here"
    ]
