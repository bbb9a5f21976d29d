"""`mmchat serve`'s HTTP edge on a FakeEngine: the shapes the openai and anthropic SDKs parse, every
error status, the options refused by name, the media policy a server needs, the access line."""

from __future__ import annotations

import base64
import json
import logging

import anthropic
import openai
import pytest

from mmchat.inputs.policy import MediaPolicy
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.serving import KEY, USER, client, png_bytes, png_url


def sdk(test_client, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=test_client, max_retries=0, **kw)


def claude(test_client) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url="http://testserver", api_key=KEY, http_client=test_client, max_retries=0)


# -- OpenAI ---------------------------------------------------------------------------------


def test_the_openai_sdk_gets_a_completion_with_an_image_and_its_usage():
    with client() as c:
        reply = sdk(c).chat.completions.create(
            model="fake-model",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": png_url()}},
                        {"type": "text", "text": "what?"},
                    ],
                }
            ],
            max_tokens=20,
        )
    assert reply.object == "chat.completion" and reply.model == "fake-model"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content.startswith("[image 40x30 ")  # the FakeEngine saw the decoded image
    assert reply.usage.prompt_tokens == 2 and reply.usage.prompt_tokens_details.cached_tokens == 0


def test_a_stream_carries_the_role_first_the_text_then_the_finish_and_the_usage_when_asked():
    with client() as c:
        chunks = list(
            sdk(c).chat.completions.create(
                model="fake-model",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        plain = list(sdk(c).chat.completions.create(model="fake-model", messages=USER, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "hello there"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 2
    assert all(ch.usage is None for ch in chunks[:-1])
    assert all(ch.usage is None for ch in plain) and plain[-1].choices[0].finish_reason == "stop"


def test_sampling_fields_reach_the_engine_checked_by_the_clis_rules():
    engine = FakeEngine()
    with client(Runner(engine=engine, policy=MediaPolicy())) as c:
        sdk(c).chat.completions.create(
            model="fake-model",
            messages=USER,
            temperature=0.2,
            top_p=0.5,
            seed=3,
            max_completion_tokens=7,
            stop=["END"],
            presence_penalty=0.5,
            frequency_penalty=0.25,
            extra_body={"top_k": 5, "min_p": 0.1},
        )
        with pytest.raises(openai.BadRequestError) as bad:
            sdk(c).chat.completions.create(model="fake-model", messages=USER, top_p=1.5)
    options = engine.calls[0][1]
    assert (options.temperature, options.top_p, options.seed, options.max_tokens) == (0.2, 0.5, 3, 7)
    assert (options.stop, options.top_k, options.min_p) == (("END",), 5, 0.1)
    assert (options.presence_penalty, options.frequency_penalty) == (0.5, 0.25)
    assert bad.value.status_code == 400 and "top_p=1.5 is not valid: give a number from 0 to 1" in bad.value.message


def test_a_json_schema_response_format_reaches_the_engine_as_its_schema():
    engine = FakeEngine()
    schema = {"type": "object", "properties": {"cat": {"type": "boolean"}}, "required": ["cat"]}
    with client(Runner(engine=engine, policy=MediaPolicy())) as c:
        sdk(c).chat.completions.create(
            model="fake-model",
            messages=USER,
            response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}},
        )
        sdk(c).chat.completions.create(model="fake-model", messages=USER, response_format={"type": "json_object"})
    assert engine.calls[0][1].schema == schema and engine.calls[1][1].schema == {"type": "object"}


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
    ],
)
def test_what_the_engine_cannot_honour_is_refused_by_name_never_dropped(fields, named):
    engine = FakeEngine()
    with client(Runner(engine=engine, policy=MediaPolicy())) as c:
        with pytest.raises(openai.BadRequestError) as bad:
            sdk(c).chat.completions.create(model="fake-model", messages=USER, **fields)
    assert bad.value.status_code == 400 and bad.value.body["param"] == named
    assert bad.value.body["message"].startswith(f"{named} is not supported by mmchat serve") and engine.calls == []


def test_bad_parts_unknown_fields_and_broken_json_are_400_with_openais_error_object():
    with client() as c:
        part = c.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        )
        unknown = c.post("/v1/chat/completions", json={"messages": USER, "temprature": 1})
        broken = c.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        undecodable = c.post(
            "/v1/chat/completions",
            json={
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                    }
                ]
            },
        )
    for response in (part, unknown, broken, undecodable):
        assert response.status_code == 400, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0]: image_url needs {'url': ...}" in part.json()["error"]["message"]
    assert "unknown field 'temprature'" in unknown.json()["error"]["message"]
    assert broken.json()["error"]["code"] == "invalid_json"


def test_a_pdf_as_an_openai_file_part_is_read_as_pages():
    from tests.support.documents import text_pdf

    engine = FakeEngine()
    pdf = base64.b64encode(text_pdf_bytes(text_pdf)).decode()
    part = {"type": "file", "file": {"filename": "r.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}}
    with client(Runner(engine=engine, policy=MediaPolicy())) as c:
        reply = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [part]}]})
        by_id = c.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
        )
    assert reply.status_code == 200, reply.text
    segments = engine.calls[0][0][-1].segments
    assert any("Page 2 says hello" in s for s in segments if isinstance(s, str))  # page 2's text layer, after page 1
    assert by_id.status_code == 400 and "no Files API" in by_id.json()["error"]["message"]


def text_pdf_bytes(write) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return write(Path(d) / "r.pdf", 2).read_bytes()


# -- Anthropic ------------------------------------------------------------------------------


def test_the_anthropic_sdk_gets_a_message_with_an_image_block():
    image = base64.b64encode(png_bytes()).decode()
    with client() as c:
        message = claude(c).messages.create(
            model="fake-model",
            max_tokens=50,
            system="be brief",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                        {"type": "text", "text": "what?"},
                    ],
                }
            ],
        )
    assert message.type == "message" and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text.startswith("[image 40x30 ")
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 4  # "be brief" + image + "what?"


def test_an_anthropic_stream_comes_in_anthropics_event_order():
    with client() as c:
        with claude(c).messages.stream(model="fake-model", max_tokens=1, messages=USER) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
        raw = c.post("/v1/messages", json={"model": "fake-model", "max_tokens": 9, "messages": USER, "stream": True})
    names = [line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")]
    names = [n for i, n in enumerate(names) if n != "content_block_delta" or names[i + 1] != n]  # text comes in 1+
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == "hello" and final.stop_reason == "max_tokens" and final.usage.output_tokens == 1


def test_anthropic_errors_are_its_error_objects():
    with client() as c:
        no_max = c.post("/v1/messages", json={"model": "fake-model", "messages": USER})
        tools = c.post(
            "/v1/messages",
            json={
                "model": "fake-model",
                "max_tokens": 5,
                "messages": USER,
                "tools": [{"name": "f", "input_schema": {}}],
            },
        )
        with pytest.raises(anthropic.NotFoundError) as missing:
            claude(c).messages.create(model="claude-opus", max_tokens=5, messages=USER)
    assert no_max.status_code == 400 and no_max.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
    assert tools.status_code == 400 and tools.json()["error"]["message"].startswith("tools is not supported")
    assert missing.value.status_code == 404 and missing.value.body["error"]["type"] == "not_found_error"


# -- models, health, keys, limits --------------------------------------------------------------


def test_models_lists_the_loaded_model_with_what_it_takes_for_either_sdk():
    with client() as c:
        listed = sdk(c).models.list().data
        theirs = claude(c).models.list().data
        health = c.get("/health").json()
    assert [m.id for m in listed] == ["fake-model"] and listed[0].owned_by == "mmchat"
    assert listed[0].model_extra["modalities"] == ["text", "image", "video", "audio"]
    assert [m.id for m in theirs] == ["fake-model"]
    assert health == {"status": "ok", "model": "fake-model", "busy": False, "waiting": 0}


def test_an_unknown_model_or_path_is_404():
    with client() as c:
        with pytest.raises(openai.NotFoundError) as model:
            sdk(c).chat.completions.create(model="gpt-4o", messages=USER)
        path = c.get("/v1/embeddings")
    assert model.value.body["code"] == "model_not_found" and "`gpt-4o` is not served here" in model.value.message
    assert path.status_code == 404 and path.json()["error"]["message"] == "GET /v1/embeddings: no such endpoint"


def test_with_a_key_every_endpoint_but_health_needs_it_bearer_or_x_api_key():
    with client(api_key=KEY) as c:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=c, max_retries=0).models.list()
        bare = c.post("/v1/messages", json={"model": "fake-model", "max_tokens": 5, "messages": USER})
        assert sdk(c).models.list().data[0].id == "fake-model"  # Bearer
        assert claude(c).messages.create(model="fake-model", max_tokens=5, messages=USER).content  # x-api-key
        assert c.get("/health").status_code == 200
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"


def test_a_body_over_the_limit_is_413_from_its_length_or_as_it_streams_in():
    engine = FakeEngine()
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()

    def chunks():
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    with client(Runner(engine=engine, policy=MediaPolicy()), max_body=4096) as c:
        declared = c.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        chunked = c.post("/v1/chat/completions", content=chunks())
        claude_side = c.post("/v1/messages", content=big)
        small = c.post("/v1/chat/completions", json={"messages": USER})
    assert declared.status_code == chunked.status_code == claude_side.status_code == 413
    assert (
        declared.json()["error"]["message"] == "the request body is over the server's limit of 4096 bytes (--max-body)"
    )
    assert claude_side.json()["error"]["type"] == "request_too_large"
    assert small.status_code == 200 and len(engine.calls) == 1


def test_one_access_line_per_request_without_the_body_or_the_key(caplog):
    with caplog.at_level(logging.INFO, logger="mmchat.serve.access"), client(api_key=KEY) as c:
        sdk(c).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "secret words"}])
        c.get("/v1/models")
    lines = [r.getMessage() for r in caplog.records if r.name == "mmchat.serve.access"]
    assert len(lines) == 2
    assert '"POST /v1/chat/completions" 200 in=2 cached=0 out=2 ' in lines[0]
    assert '"GET /v1/models" 401 ' in lines[1]
    assert not any("secret" in line or KEY in line for line in lines)
