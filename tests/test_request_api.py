"""The mistral.rs-style request API on the tiny models: every kind of request in mistral.rs's
"Multimodal input from Python" guide, with only the import line changed, the model id resolved
from a Hugging Face cache the test lays out (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
import soundfile

from mmchat import ChatCompletionRequest, MultimodalArchitecture, Runner, Which
from mmchat.errors import InputError
from mmchat.models import registry
from mmchat.testing import FakeEngine
from tests.support.fakehub import closed_port, put_in_cache, use_hub
from tests.support.helpers import THREADS
from tests.support.mediafiles import noise_png, tone
from tests.support.videofiles import write_video

MODEL_ID = "test-org/tiny-omni"  # what the registry entry below says its GGUFs were converted from


def offline_cache(mp: pytest.MonkeyPatch, home: Path):
    """An own Hugging Face cache, offline, and an own MMCHAT_HOME: nothing real is read or fetched."""
    from huggingface_hub import constants

    cache = use_hub(mp, closed_port(), home / "hf")
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(constants, "HF_HUB_OFFLINE", True)
    mp.setenv("MMCHAT_HOME", str(home / "mmchat"))
    return cache


@pytest.fixture(scope="module")
def runner(models, tmp_path_factory):
    home = tmp_path_factory.mktemp("request-api")
    with pytest.MonkeyPatch.context() as mp:
        cache = offline_cache(mp, home)
        put_in_cache(
            cache,
            "test-org/tiny-omni-GGUF",
            {
                "tiny-omni-Q4_K_M.gguf": models["llm"].read_bytes(),
                "mmproj-tiny-omni-f16.gguf": models["mmproj-omni"].read_bytes(),
            },
        )
        registry.user_file().parent.mkdir(parents=True)
        registry.user_file().write_text(
            f'[models.tiny-omni]\nrepo = "test-org/tiny-omni-GGUF"\noriginal = "{MODEL_ID}"\n'
            'quant = "Q4_K_M"\nmodalities = ["image", "audio"]\n',
            encoding="utf-8",
        )
        r = Runner(
            which=Which.MultimodalPlain(model_id=MODEL_ID, arch=MultimodalArchitecture.Gemma3),
            in_situ_quant="4",
            threads=THREADS,
        )
    yield r
    r.close()


def ask(runner: Runner, *content: dict[str, Any], **fields: Any):
    fields = {"max_tokens": 8, "temperature": 0, **fields}
    request = ChatCompletionRequest(model=MODEL_ID, messages=[{"role": "user", "content": list(content)}], **fields)
    return runner.send_chat_completion_request(request)


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def audio(url: str) -> dict[str, Any]:
    return {"type": "audio_url", "audio_url": {"url": url}}


TEXT = {"type": "text", "text": "What do you see in this image?"}


def test_the_guides_image_request_runs_with_only_the_import_changed(models, tmp_path, monkeypatch, capfd):
    """The guide's first example, word for word but for the import, on a tiny Qwen3-VL laid out as Qwen's repo."""
    snapshot = put_in_cache(
        offline_cache(monkeypatch, tmp_path),
        "Qwen/Qwen3-VL-4B-Instruct-GGUF",
        {
            "Qwen3VL-4B-Instruct-Q4_K_M.gguf": models["llm-qwen3vl"].read_bytes(),
            "mmproj-Qwen3VL-4B-Instruct-F16.gguf": models["mmproj-qwen3vl"].read_bytes(),
        },
    )
    photo = noise_png(tmp_path / "photo.png")

    runner = Runner(
        which=Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch=MultimodalArchitecture.Qwen3VL),
        in_situ_quant="4",
    )
    response = runner.send_chat_completion_request(
        ChatCompletionRequest(
            model="Qwen/Qwen3-VL-4B-Instruct",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"file://{photo}"}},
                        {"type": "text", "text": "What do you see in this image?"},
                    ],
                }
            ],
            max_tokens=8,
        )
    )
    print(response.choices[0].message.content)

    assert runner.engine.model_path == snapshot / "Qwen3VL-4B-Instruct-Q4_K_M.gguf"
    assert response.choices[0].message.content and response.choices[0].finish_reason == "length"
    u = response.usage
    assert u.completion_tokens == 8 and u.image_tokens > 0 and u.total_tokens == u.prompt_tokens + 8
    assert "warning" not in capfd.readouterr().err  # the arch agrees with the GGUF
    runner.close()


@pytest.fixture
def https_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An https:// server on 127.0.0.1 serving tmp_path, with a certificate this process trusts."""
    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # what OpenSSL's default verify paths read

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_image_url_as_file_https_or_data_url_is_the_same_image(runner, tmp_path, https_url):
    photo = noise_png(tmp_path / "photo.png")
    b64 = base64.b64encode(photo.read_bytes()).decode("ascii")
    by_file = ask(runner, image(f"file://{photo}"), TEXT).choices[0].message.content
    by_https = ask(runner, image(f"{https_url}/photo.png"), TEXT).choices[0].message.content
    by_data = ask(runner, image(f"data:image/png;base64,{b64}"), TEXT).choices[0].message.content
    assert by_file == by_https == by_data
    assert (
        by_file
        == runner.chat([{"role": "user", "content": [image(str(photo)), TEXT]}], max_tokens=8, temperature=0).content
    )  # the request path is Runner.chat's
    other = noise_png(tmp_path / "other.png", seed=1)
    assert ask(runner, image(f"file://{other}"), TEXT).choices[0].message.content != by_file


def test_several_images_are_seen_in_order(runner, tmp_path):
    a, b = noise_png(tmp_path / "a.png", seed=2), noise_png(tmp_path / "b.png", seed=3)
    ab = ask(runner, image(f"file://{a}"), image(f"file://{b}"), TEXT)
    ba = ask(runner, image(f"file://{b}"), image(f"file://{a}"), TEXT)
    assert ab.usage.image_tokens == ba.usage.image_tokens == 2 * 16  # both seen (16 tokens an image here)
    assert ab.choices[0].message.content != ba.choices[0].message.content
    assert (
        ask(runner, image(f"file://{a}"), image(f"file://{b}"), TEXT).choices[0].message.content
        == ab.choices[0].message.content
    )


@pytest.mark.parametrize(
    "ext, fmt, subtype",
    [("wav", "WAV", "PCM_16"), ("mp3", "MP3", None), ("flac", "FLAC", None), ("ogg", "OGG", "VORBIS")],
)
def test_audio_url_in_each_format_the_guide_names(runner, tmp_path, ext, fmt, subtype):
    clip = tmp_path / f"clip.{ext}"
    soundfile.write(clip, tone(1.0), 16000, format=fmt, subtype=subtype)
    question = {"type": "text", "text": "Transcribe this audio."}
    reply = ask(runner, audio(f"file://{clip}"), question)
    assert reply.usage.audio_tokens > 0 and reply.usage.image_tokens == 0
    assert (
        reply.choices[0].message.content
        == runner.chat([{"role": "user", "content": [audio(str(clip)), question]}], max_tokens=8, temperature=0).content
    )


def test_the_guides_short_audio_and_video_parts_are_the_url_parts(runner, tmp_path):
    """One version of the guide writes {"type": "audio", "audio": {"url": ...}}: the same as audio_url."""
    clip, movie = tmp_path / "clip.wav", write_video(tmp_path / "clip.mp4", seconds=1)
    soundfile.write(clip, tone(1.0), 16000)
    short = ask(
        runner,
        {"type": "audio", "audio": {"url": f"file://{clip}"}},
        {"type": "video", "video": {"url": f"file://{movie}"}},
        TEXT,
    )
    long = ask(runner, audio(f"file://{clip}"), {"type": "video_url", "video_url": {"url": f"file://{movie}"}}, TEXT)
    assert short.usage.audio_tokens > 0 and short.usage.image_tokens > 0
    assert short.choices[0].message.content == long.choices[0].message.content


def test_video_url_is_sampled_frames(runner, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", seconds=2)
    question = {"type": "text", "text": "Describe what happens in this video."}
    reply = ask(runner, {"type": "video_url", "video_url": {"url": f"file://{clip}"}}, question)
    frames = reply.usage.image_tokens // 16
    assert frames >= 2 and reply.usage.image_tokens == 16 * frames
    assert (
        reply.choices[0].message.content
        == runner.chat(
            [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": str(clip)}}, question]}],
            max_tokens=8,
            temperature=0,
        ).content
    )


def test_image_and_audio_in_one_message_are_seen_in_order(runner, tmp_path):
    chart = noise_png(tmp_path / "chart.png", seed=4)
    commentary = tmp_path / "commentary.wav"
    soundfile.write(commentary, tone(1.0, freq=330), 16000)
    question = {"type": "text", "text": "Does the commentary match what the chart shows?"}
    seen_first = ask(runner, image(f"file://{chart}"), audio(f"file://{commentary}"), question)
    heard_first = ask(runner, audio(f"file://{commentary}"), image(f"file://{chart}"), question)
    for reply in (seen_first, heard_first):
        assert reply.usage.image_tokens == 16 and reply.usage.audio_tokens > 0
    assert seen_first.choices[0].message.content != heard_first.choices[0].message.content


def test_an_in_memory_pil_image_saved_as_base64_png(runner, tmp_path):
    from PIL import Image

    photo = noise_png(tmp_path / "photo.jpg.png", seed=5)
    img = Image.open(photo)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    describe = {"type": "text", "text": "Describe this image."}
    inline = ask(runner, image(f"data:image/png;base64,{b64}"), describe).choices[0].message.content
    assert inline == ask(runner, image(f"file://{photo}"), describe).choices[0].message.content


def test_stream_true_returns_chunks_whose_deltas_are_the_answer(runner, tmp_path):
    photo = noise_png(tmp_path / "photo.png", seed=6)
    whole = ask(runner, image(f"file://{photo}"), TEXT)
    chunks = list(ask(runner, image(f"file://{photo}"), TEXT, stream=True))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content for c in chunks) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert chunks[-1].usage.completion_tokens == 8 and all(c.usage is None for c in chunks[:-1])


def test_response_format_with_a_json_schema_constrains_the_answer(runner):
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    messages = [{"type": "text", "text": "Is it ok?"}]
    for fields in (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}},
        {"grammar_type": "json_schema", "grammar": json.dumps(schema)},
    ):
        answer = json.loads(ask(runner, *messages, max_tokens=32, **fields).choices[0].message.content)
        assert set(answer) == {"ok"} and isinstance(answer["ok"], bool)
    free = ask(runner, *messages, max_tokens=32).choices[0].message.content
    with pytest.raises(json.JSONDecodeError):
        json.loads(free)  # without it the tiny model writes gibberish


def test_a_contradicting_arch_is_one_warning_line_and_the_gguf_runs(runner, models, tmp_path, monkeypatch, capfd):
    cache = offline_cache(monkeypatch, tmp_path)
    put_in_cache(
        cache,
        "Qwen/Qwen3-VL-4B-Instruct-GGUF",
        {
            "Qwen3VL-4B-Instruct-Q4_K_M.gguf": models["llm"].read_bytes(),
            "mmproj-Qwen3VL-4B-Instruct-F16.gguf": models["mmproj-vision"].read_bytes(),
        },
    )  # a Gemma 3 pair in Qwen's name
    with Runner(
        which=Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch=MultimodalArchitecture.Qwen3VL),
        in_situ_quant="4",
        threads=THREADS,
    ) as r:
        assert r.capabilities().vision
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [
        "mmchat: warning: arch=MultimodalArchitecture.Qwen3VL but the GGUF is Gemma3 "
        "(projector gemma3, text model llama): running what the GGUF says"
    ]


# -- fields -> options, on the fake engine ------------------------------------------------------


def test_each_sampling_field_reaches_the_generation_options():
    engine = FakeEngine(reply="one two three four")
    with Runner(engine=engine) as r:
        reply = r.send_chat_completion_request(
            ChatCompletionRequest(
                model="default",
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=3,
                temperature=0.7,
                top_p=0.9,
                top_k=20,
                min_p=0.05,
                stop=["END"],
                seed=7,
                frequency_penalty=0.5,
                presence_penalty=0.25,
                repetition_penalty=1.1,
            )
        )
        assert reply.choices[0].message.content == "one two three" and reply.usage.completion_tokens == 3
        options = engine.calls[-1][1]
        assert (options.max_tokens, options.temperature, options.top_p, options.top_k, options.min_p) == (
            3,
            0.7,
            0.9,
            20,
            0.05,
        )
        assert (options.stop, options.seed, options.frequency_penalty, options.presence_penalty) == (
            ("END",),
            7,
            0.5,
            0.25,
        )
        assert options.repeat_penalty == 1.1
        r.send_chat_completion_request(
            ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "Hi"}], stop_seqs=["a", "b"])
        )
        assert engine.calls[-1][1].stop == ("a", "b")  # mistral.rs's name for it


def test_bad_fields_are_the_same_clear_errors_as_runner_chat():
    with Runner(engine=FakeEngine()) as r:
        hi = [{"role": "user", "content": "Hi"}]
        with pytest.raises(InputError, match=r"top_p=7 is not valid: give a number from 0 to 1"):
            r.send_chat_completion_request(ChatCompletionRequest(model="m", messages=hi, top_p=7))
        with pytest.raises(InputError, match="grammar_type='regex' is not one mmchat runs"):
            r.send_chat_completion_request(
                ChatCompletionRequest(model="m", messages=hi, grammar="a+", grammar_type="regex")
            )
        with pytest.raises(InputError, match="response_format=.* is not valid"):
            r.send_chat_completion_request(
                ChatCompletionRequest(model="m", messages=hi, response_format={"type": "xml"})
            )
        with pytest.raises(InputError, match="n_choices=2: mmchat answers one choice"):
            r.send_chat_completion_request(ChatCompletionRequest(model="m", messages=hi, n_choices=2))
        with pytest.raises(InputError, match="takes a ChatCompletionRequest"):
            r.send_chat_completion_request({"messages": hi})
    with pytest.raises(InputError, match="give a model either as which=Which"):
        Runner(model="model.gguf", which=Which.MultimodalPlain(model_id=MODEL_ID))
    with pytest.raises(InputError, match="give a model either as which=Which"):
        Runner(in_situ_quant="4")
