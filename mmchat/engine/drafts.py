"""Drafts from the prompt: the next tokens guessed by finding the latest words earlier in the text.

"Transcribe this page", "fix the typos", "extract the table": much of such an answer repeats the
prompt. Prompt lookup (n-gram drafting: llama.cpp's `--spec-type ngram-*`, llama-cpp-python's
LlamaPromptLookupDecoding) finds the last few tokens of the text so far earlier in it, and proposes
what followed them there; the model then checks the whole draft in one batch (llamacpp.py), which on
a CPU costs little more than one token, since the weights are read once either way. Only greedy
answers are drafted: a draft token is kept when it is the one the model would have picked.

Pure Python over token ids (media are a gap no n-gram crosses): no llama_cpp here.
"""

from __future__ import annotations

from collections.abc import Iterable

GAP = -1  # a medium in the prompt: no n-gram spans it


class PromptLookup:
    """The prompt's and the answer's tokens so far, indexed by every n-gram of `min_match` to
    `max_match` tokens (the latest place each was seen), to propose up to `length` tokens."""

    def __init__(self, tokens: Iterable[int], *, length: int, min_match: int = 2, max_match: int = 4):
        self.length, self.min_match, self.max_match = length, min_match, max(min_match, max_match)
        self.tokens: list[int] = []
        self._seen: dict[tuple[int, ...], int] = {}  # n-gram -> where it ended, latest
        self.extend(tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for n in range(self.min_match, self.max_match + 1):
                if end - n - 1 >= 0:  # the n-gram ending one before: the last one is looked up, not indexed
                    gram = tuple(self.tokens[end - n - 1 : end - 1])
                    if GAP not in gram:
                        self._seen[gram] = end - 1

    def propose(self, limit: int | None = None) -> list[int]:
        """What followed the longest recent n-gram the last time it was seen; [] when none was."""
        most = self.length if limit is None else min(self.length, limit)
        if most <= 0:
            return []
        for n in range(self.max_match, self.min_match - 1, -1):
            if len(self.tokens) < n:
                continue
            at = self._seen.get(tuple(self.tokens[-n:]))
            if at is not None:
                draft = self.tokens[at : at + most]
                if GAP in draft:
                    draft = draft[: draft.index(GAP)]
                return draft
        return []
