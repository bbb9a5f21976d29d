"""The Python API as a script author uses it: Runner, helpers, result shapes, errors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from PIL import Image as PILImage

import mmchat
import mmchat.errors
import mmchat.messages
from mmchat import Runner, audio_from_array, image_from_bytes, image_from_pil, image_part, input_audio_part, text_part
from mmchat.errors import InputError
from mmchat.testing import FakeEngine
from tests.support.helpers import GREEDY, THREADS
from tests.support.mediafiles import noise_png, tone, tone_wav

MESSAGE_BUILDERS = (
    "text_part",
    "image_part",
    "audio_part",
    "video_part",
    "input_audio_part",
    "user_message",
    "system_message",
    "assistant_message",
)


def test_all_is_sorted_and_is_the_export_table():
    """`__all__` is the names of `_EXPORTS` (name -> module), sorted: the one table gives both."""
    assert mmchat.__all__ == sorted(mmchat.__all__)
    assert mmchat.__all__ == sorted(mmchat._EXPORTS)


def test_every_public_name_imports_from_the_module_the_table_names():
    for name in mmchat.__all__:
        module = importlib.import_module(f"mmchat.{mmchat._EXPORTS[name]}")
        assert getattr(mmchat, name) is getattr(module, name), name


def test_star_import_gives_exactly_the_public_names():
    namespace: dict = {}
    exec("from mmchat import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == mmchat.__all__
    assert all(namespace[name] is getattr(mmchat, name) for name in namespace)


def test_every_error_class_is_exported():
    errors = [
        value
        for value in vars(mmchat.errors).values()
        if isinstance(value, type)
        and issubclass(value, mmchat.errors.MmchatError)
        and value.__module__ == "mmchat.errors"
    ]
    assert mmchat.errors.MmchatError in errors and InputError in errors  # the walk finds them
    for cls in errors:
        assert cls.__name__ in mmchat.__all__, cls.__name__
        assert getattr(mmchat, cls.__name__) is cls


def test_every_message_builder_is_exported():
    for name in MESSAGE_BUILDERS:
        assert name in mmchat.__all__, name
        assert getattr(mmchat, name) is getattr(mmchat.messages, name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="not_a_thing"):
        mmchat.not_a_thing  # noqa: B018
    assert not hasattr(mmchat, "not_a_thing")


@pytest.fixture(scope="module")
def omni(models):
    with Runner(models["llm"], models["mmproj-omni"], n_ctx=4096, threads=THREADS) as r:
        yield r


def test_chat_returns_an_openai_shaped_completion(omni, tmp_path):
    png = noise_png(tmp_path / "p.png")
    messages = [{"role": "user", "content": [image_part(str(png)), text_part("Hi")]}]
    reply = omni.chat(messages, **{**GREEDY, "max_tokens": 8})
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 8 and reply.usage.total_tokens == reply.usage.prompt_tokens + 8
    assert reply.timings.generation > 0


def test_stream_yields_the_same_text_as_chat(omni):
    messages = [{"role": "user", "content": "Tell me a story."}]
    full = omni.chat(messages, **GREEDY).content
    stream = omni.stream(messages, **GREEDY)
    deltas = list(stream)
    assert len(deltas) > 1 and "".join(deltas) == full
    assert stream.completion.content == full


def test_in_memory_helpers_match_the_file(omni, tmp_path):
    png = noise_png(tmp_path / "p.png", seed=5)
    wav = tone_wav(tmp_path / "t.wav", seconds=1.0)
    from_files = omni.chat(
        [
            {
                "role": "user",
                "content": [
                    image_part(str(png)),
                    {"type": "audio_url", "audio_url": {"url": str(wav)}},
                    text_part("?"),
                ],
            }
        ],
        **GREEDY,
    )
    pil = PILImage.open(png)
    from_memory = omni.chat(
        [{"role": "user", "content": [image_from_pil(pil), audio_from_array(tone(1.0), 16000), text_part("?")]}],
        **GREEDY,
    )
    from_bytes = omni.chat(
        [
            {
                "role": "user",
                "content": [
                    image_from_bytes(png.read_bytes()),
                    input_audio_part(wav.read_bytes(), "wav"),
                    text_part("?"),
                ],
            }
        ],
        **GREEDY,
    )
    assert from_files.content == from_bytes.content
    # the WAV on disk is 16-bit, the array is float: a hair apart, same tokens for the image
    assert from_memory.usage.prompt_tokens == from_files.usage.prompt_tokens


def test_stereo_int16_array_is_accepted():
    stereo = (np.stack([tone(0.5), tone(0.5, 660)], axis=1) * 32767).astype(np.int16)
    part = audio_from_array(stereo, 44100)
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"


def test_unknown_option_is_a_clear_error(omni):
    with pytest.raises(InputError, match="unknown option 'max_token'"):
        omni.chat([{"role": "user", "content": "Hi"}], max_token=5)


def test_runner_with_a_fake_engine_needs_no_model(tmp_path):
    png = noise_png(tmp_path / "p.png", size=(40, 30))
    fake = FakeEngine()
    with Runner(engine=fake) as r:
        reply = r.chat([{"role": "user", "content": [image_part(str(png)), text_part("what")]}], max_tokens=50)
    assert reply.content.startswith("[image 40x30 ") and reply.content.endswith("what")
    turns, options = fake.calls[0]
    assert options.max_tokens == 50


def test_large_images_are_scaled_to_the_budget(tmp_path):
    big = tmp_path / "big.png"
    PILImage.new("RGB", (4000, 3000), (10, 20, 30)).save(big)
    with Runner(engine=FakeEngine(), image_max_side=800) as r:
        assert r.chat([{"role": "user", "content": [image_part(str(big))]}]).content.startswith("[image 800x600")


def test_media_are_decoded_once_per_content(tmp_path, monkeypatch):
    import os

    import mmchat.media.image as image_module

    calls = []
    real = image_module.decode_image
    monkeypatch.setattr(image_module, "decode_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    png = noise_png(tmp_path / "p.png", seed=1)
    turn = {"role": "user", "content": [image_part(str(png)), text_part("what")]}
    with Runner(engine=FakeEngine()) as r:
        first = r.chat([turn]).content
        r.chat([turn, {"role": "assistant", "content": first}, {"role": "user", "content": "more"}])
        assert len(calls) == 1  # the follow-up reused the decoded pixels
        noise_png(png, seed=2)
        os.utime(png, ns=(1, 1))
        assert r.chat([turn]).content != first and len(calls) == 2  # a changed file is read again


def test_penalties_change_a_greedy_answer_and_are_checked(omni):
    messages = [{"role": "user", "content": "Tell me a story."}]
    plain = omni.chat(messages, **{**GREEDY, "max_tokens": 40}).content
    penalised = omni.chat(messages, **{**GREEDY, "max_tokens": 40}, frequency_penalty=2.0, presence_penalty=1.0).content
    assert penalised != plain
    assert (
        omni.chat(messages, **{**GREEDY, "max_tokens": 40}, frequency_penalty=2.0, presence_penalty=1.0).content
        == penalised
    )
    with pytest.raises(InputError, match=r"frequency_penalty=5 is not valid: give a number from -2 to 2"):
        omni.chat(messages, frequency_penalty=5)


def test_structured_output_from_python_with_a_schema_or_a_grammar(omni):
    import json

    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "Is it ok?"}]
    for given in (schema, json.dumps(schema)):
        answer = json.loads(omni.chat(messages, **{**GREEDY, "max_tokens": 32}, schema=given).content)
        assert set(answer) == {"ok"} and isinstance(answer["ok"], bool)
    yes_no = omni.chat(messages, **GREEDY, grammar='root ::= "yes" | "no"').content
    assert yes_no in ("yes", "no")
    with pytest.raises(InputError, match="a schema and a grammar both constrain the answer"):
        omni.chat(messages, schema=schema, grammar='root ::= "yes"')


def test_ignore_eos_generates_to_max_tokens(omni, monkeypatch):
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_vocab_is_eog", lambda vocab, token: True)  # every token ends the text
    messages = [{"role": "user", "content": "Hi"}]
    ended = omni.chat(messages, **GREEDY)
    assert ended.usage.completion_tokens == 0 and ended.finish_reason == "stop"
    kept = omni.chat(messages, **GREEDY, ignore_eos=True)
    assert kept.usage.completion_tokens == GREEDY["max_tokens"] and kept.finish_reason == "length"


def test_runner_prompt_shows_the_rendered_prompt_with_media_where_they_stand(tmp_path):
    from mmchat import Runner, image_part, user_message
    from mmchat.testing import FakeEngine
    from tests.support.mediafiles import noise_png

    photo = noise_png(tmp_path / "p.png")
    with Runner(engine=FakeEngine()) as runner:
        prompt = runner.prompt([user_message("Is [[1]] sharp?", [image_part(str(photo))])])
    assert prompt == "user: Is <__media__> sharp?"


def test_stats_are_a_snapshot_of_typed_counters_and_a_server_says_no_token_ids():
    """`runner.stats` is a `Stats` as it stood when read (a later answer does not change it); an
    engine that sends text (the fake, as a server) leaves `token_ids` None, and the JSON stays OpenAI's."""
    from mmchat.engine.base import Stats

    with Runner(engine=FakeEngine()) as r:
        before = r.stats
        reply = r.chat([{"role": "user", "content": "hello"}], max_tokens=8)
        after = r.stats
    assert isinstance(before, Stats) and before.prompt_tokens_evaluated == 0 < after.prompt_tokens_evaluated
    assert list(after.as_dict())[:2] == ["media_encodes", "media_disk_hits"]
    assert reply.token_ids is None and "token_ids" not in str(reply.to_dict())
