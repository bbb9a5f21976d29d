"""Streaming text out of token bytes: whole characters only, stop strings never half-shown."""

from __future__ import annotations

from mmchat.engine.textstream import TextStream


def test_a_character_split_across_tokens_comes_out_whole():
    s = TextStream()
    euro = "€".encode()
    assert s.feed(b"price: " + euro[:1]) == "price: "
    assert s.feed(euro[1:2]) == ""
    assert s.feed(euro[2:] + b"5") == "€5"


def test_text_that_may_start_a_stop_string_is_held_back_then_released():
    s = TextStream(stop=["\nUser:"])
    assert s.feed(b"Hello\nUs") == "Hello"
    assert s.feed(b"eful") == "\nUseful"
    assert not s.stopped


def test_a_stop_string_ends_the_stream_and_is_not_shown():
    s = TextStream(stop=["<end>"])
    assert s.feed(b"done<e") == "done"
    assert s.feed(b"nd> trailing") == ""
    assert s.stopped and s.feed(b"more") == "" and s.flush() == ""


def test_flush_releases_what_was_held():
    s = TextStream(stop=["STOP"])
    assert s.feed(b"ST") == ""
    assert s.flush() == "ST"
