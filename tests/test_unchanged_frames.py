"""Frames that repeat are not encoded again (issue 28): a sampled frame no different from the last
one sent becomes one line of text, "[00:01-00:04] unchanged", its sound kept; a change a person
would see (one word on a slide) is always sent; --keep-all-frames sends every frame."""

from __future__ import annotations

import json

import numpy as np

from mmchat import Runner
from mmchat.engine.layout import changed
from mmchat.messages import user_message, video_part
from mmchat.preview.compose import caption
from mmchat.testing import FakeEngine
from tests.support.helpers import invoke
from tests.support.videofiles import slide, slides_video


def test_one_changed_word_is_a_change_and_compression_noise_is_not():
    before, after = slide("Revenue grew in March"), slide("Revenue grew in April")
    assert changed(before, after)
    noise = np.random.default_rng(0).integers(-3, 4, before.shape)
    assert not changed(before, np.clip(before.astype(int) + noise, 0, 255).astype(np.uint8))
    assert changed(before, before[:, :-2])  # another size is another picture


def test_a_recording_of_two_slides_sends_each_slide_once_and_says_when_nothing_changed(tmp_path):
    clip = slides_video(
        tmp_path / "talk.mp4", [(slide("Revenue grew in March"), 5), (slide("Revenue grew in April"), 5)]
    )
    fake = FakeEngine()
    reply = Runner(engine=fake).chat([user_message("What changed?", [video_part(str(clip))])], max_tokens=500)
    sent = [s if isinstance(s, str) else type(s).__name__ for s in fake.calls[0][0][-1].segments]
    assert sent[:6] == ["[00:00]", "Image", "[00:01-00:04] unchanged", "[00:05]", "Image", "[00:06-00:09] unchanged"]
    assert reply.usage.frames_skipped == 8
    kept_all = FakeEngine()
    every = Runner(engine=kept_all).chat(
        [user_message("What changed?", [video_part(str(clip), keep_all_frames=True)])], max_tokens=500
    )
    assert sum(type(s).__name__ == "Image" for s in kept_all.calls[0][0][-1].segments) == 10
    assert every.usage.frames_skipped == 0


def test_the_json_and_the_preview_caption_say_how_many_were_skipped(tmp_path):
    clip = slides_video(tmp_path / "talk.mp4", [(slide("Revenue grew in March"), 4)])
    result, fake = invoke("ask", "What is it?", "--video", str(clip), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["usage"]["prompt_tokens_details"]["frames_skipped"] == 3
    line = caption("talk.mp4", "video", fake.calls[0][0][-1].segments, None)
    assert line.startswith("talk.mp4 · 1 frame of 448×252 px (3 unchanged, skipped) · "), line
    result, fake = invoke("ask", "What is it?", "--video", str(clip), "--keep-all-frames", "--json")
    assert json.loads(result.stdout)["usage"]["prompt_tokens_details"]["frames_skipped"] == 0
