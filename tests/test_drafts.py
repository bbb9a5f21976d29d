"""Drafts from the prompt (issue 28): proposals from the latest n-gram, and greedy answers that are
the same tokens with drafting as without, whether the model takes a draft whole, in part or not
at all; a follow-up after a drafted answer finds the KV cache as it should be."""

from __future__ import annotations

import pytest

from mmchat import Runner
from mmchat.engine import generating
from mmchat.engine.drafts import GAP, PromptLookup
from tests.support.helpers import THREADS
from tests.support.mediafiles import noise_png

# -- proposals -------------------------------------------------------------------------------------


def test_the_latest_longest_match_proposes_what_followed_it():
    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 5, 2, 3], length=3, min_match=2, max_match=3)
    assert lookup.propose() == [7, 8, 5]  # "2 3" was first followed by 4 5, last by 7 8
    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 8, 1, 2, 3], length=3, min_match=2, max_match=3)
    assert lookup.propose() == [4, 5, 9]  # the longest match wins
    assert lookup.propose(limit=1) == [4] and lookup.propose(limit=0) == []


def test_no_match_no_draft_and_media_are_gaps():
    assert PromptLookup([1, 2, 3, 4], length=4).propose() == []
    lookup = PromptLookup([5, 6, 7, GAP, 8, 5, 6], length=4)
    assert lookup.propose() == [7]  # stops at the medium
    lookup.extend([7, GAP, 5, 6])
    assert lookup.propose() == [7]


# -- on llama.cpp ----------------------------------------------------------------------------------

PROMPT = [{"role": "user", "content": "Say something about the sea, the ships and the sky, at length."}]


def _tokens(models, messages, *, draft: int, mmproj=None, follow_up: str | None = None) -> list[list[int]]:
    with Runner(models["llm"], mmproj, n_ctx=2048, threads=THREADS, draft=draft, cache=False) as r:
        reply = r.chat(messages, temperature=0, max_tokens=24)
        out = [reply.token_ids]
        if follow_up is not None:
            again = r.chat(
                [*messages, {"role": "assistant", "content": reply.content}, {"role": "user", "content": follow_up}],
                temperature=0,
                max_tokens=12,
            )
            out.append(again.token_ids)
    return out


class Oracle(PromptLookup):
    """Proposes the answer the model gives without drafting (from a run before), corrupted at every
    `wrong`-th proposal from its second token on: every path of the check is taken (all, part, none)."""

    answer: list[int] = []
    wrong = 0

    def __init__(self, tokens, **kw):
        super().__init__(tokens, **kw)
        self.start, self.calls = len(self.tokens), 0

    def propose(self, limit=None):
        done = len(self.tokens) - self.start
        draft = self.answer[done : done + (self.length if limit is None else min(limit, self.length))]
        self.calls += 1
        if self.wrong and self.calls % self.wrong == 0 and len(draft) > 1:
            draft = [draft[0], (draft[1] + 1) % 200, *draft[2:]]
        return draft


@pytest.mark.parametrize("wrong", [0, 2, 1])
def test_greedy_tokens_are_the_same_whatever_the_model_makes_of_the_draft(models, monkeypatch, wrong):
    plain, plain_next = _tokens(models, PROMPT, draft=0, follow_up="And the wind?")
    monkeypatch.setattr(Oracle, "answer", plain)
    monkeypatch.setattr(Oracle, "wrong", wrong)
    monkeypatch.setattr(generating, "PromptLookup", Oracle)
    drafted, drafted_next = _tokens(models, PROMPT, draft=6, follow_up="And the wind?")
    assert drafted == plain and drafted_next == plain_next


def test_drafting_from_the_prompt_keeps_the_answer_with_an_image_on_an_mrope_model(models, tmp_path):
    image = noise_png(tmp_path / "p.png")
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": str(image)}}, {"type": "text", "text": "Describe."}],
        }
    ]
    qwen = {"llm": models["llm-qwen2vl"]}
    assert _tokens(qwen, messages, draft=8, mmproj=models["mmproj-qwen2vl"]) == _tokens(
        qwen, messages, draft=0, mmproj=models["mmproj-qwen2vl"]
    )


def test_accepted_drafts_are_counted_in_the_usage(models, monkeypatch):
    plain = _tokens(models, PROMPT, draft=0)[0]
    monkeypatch.setattr(Oracle, "answer", plain)
    monkeypatch.setattr(generating, "PromptLookup", Oracle)
    with Runner(models["llm"], None, n_ctx=2048, threads=THREADS, draft=4, cache=False) as r:
        reply = r.chat(PROMPT, temperature=0, max_tokens=24).to_dict()
    details = reply["usage"]["completion_tokens_details"]
    assert details["accepted_prediction_tokens"] >= 16 and details["rejected_prediction_tokens"] == 0
