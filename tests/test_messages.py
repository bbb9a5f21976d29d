"""Message building and validation: pure, no model."""

from __future__ import annotations

import pytest

from mmchat import messages as m
from mmchat.errors import InputError
from mmchat.inputs.part import media_part, media_parts


def test_user_message_puts_media_first_in_the_given_order():
    msg = m.user_message("What changed?", [m.image_part("a.png"), m.audio_part("b.wav"), m.image_part("c.png")])
    assert [p["type"] for p in msg["content"]] == ["image_url", "audio_url", "image_url", "text"]
    assert [p.get("image_url", p.get("audio_url", {})).get("url") for p in msg["content"][:3]] == [
        "a.png",
        "b.wav",
        "c.png",
    ]


def test_a_text_only_message_stays_a_string():
    assert m.user_message("Hi") == {"role": "user", "content": "Hi"}


def test_empty_message_is_refused():
    with pytest.raises(InputError, match="empty message"):
        m.user_message("", [])


def test_validation_keeps_order_and_accepts_the_url_shorthand():
    parts = [
        {"type": "text", "text": "1"},
        {"type": "image_url", "image_url": "https://x/y.png"},
        {"type": "text", "text": "2"},
    ]
    out = m.validate_messages([{"role": "user", "content": parts}])
    assert out[0]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert [p["type"] for p in out[0]["content"]] == ["text", "image_url", "text"]


@pytest.mark.parametrize(
    "messages, needle",
    [
        ([], "empty"),
        ("hello", "must be a list"),
        ([{"role": "robot", "content": "x"}], "messages[0]: role must be one of"),
        ([{"role": "user", "content": [{"type": "picture"}]}], "messages[0].content[0]: unknown part type 'picture'"),
        ([{"role": "user", "content": [{"type": "text"}]}], "needs a string 'text'"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "image_url needs {'url'"),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "xyz"}}]}],
            "format 'xyz'",
        ),
        ([{"role": "assistant", "content": [m.image_part("a.png")]}], "only user messages can hold media"),
    ],
)
def test_validation_errors_name_the_message_and_part(messages, needle):
    with pytest.raises(InputError) as err:
        m.validate_messages(messages)
    assert needle in str(err.value)


def test_input_audio_becomes_a_data_url_with_its_format():
    part = m.input_audio_part(b"RIFF....", "wav")
    ref = media_part(part)
    assert ref.kind == "audio" and ref.url.startswith("data:audio/wav;base64,UklGRi4uLi4=")


def test_media_parts_walks_the_whole_conversation_in_order():
    convo = [
        {"role": "user", "content": [m.image_part("1.png"), m.text_part("a")]},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": [m.audio_part("2.wav"), m.video_part("3.mp4", fps=2)]},
    ]
    refs = media_parts(convo)
    assert [(r.kind, r.url) for r in refs] == [("image", "1.png"), ("audio", "2.wav"), ("video", "3.mp4")]
    assert refs[2].options == {"fps": 2} and refs[2].where == "messages[2].content[1]"


def test_placeholders_put_media_where_they_stand():
    a, b = m.image_part("a.png"), m.image_part("b.png")
    msg = m.user_message("What changed between [[2]] and [[1]]?", [a, b])
    assert msg["content"] == [m.text_part("What changed between "), b, m.text_part(" and "), a, m.text_part("?")]


def test_media_not_named_by_a_placeholder_go_first():
    a, b = m.image_part("a.png"), m.audio_part("b.wav")
    assert m.user_message("Listen: [[2]]", [a, b])["content"] == [a, m.text_part("Listen: "), b]


def test_a_placeholder_without_its_file_is_a_usage_error():
    with pytest.raises(InputError, match=r"names \[\[3\]\] but 2 media"):
        m.user_message("[[3]]", [m.image_part("a.png"), m.image_part("b.png")])
