"""Results shaped like OpenAI's chat completion, so code written for it reads ours too."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from .engine.base import Event, Finished, Started, Timings, Usage


@dataclasses.dataclass
class ChatMessage:
    content: str
    role: str = "assistant"


@dataclasses.dataclass
class Choice:
    message: ChatMessage
    finish_reason: str
    index: int = 0
    #: the ids of the generated tokens, in this model's vocabulary, as vLLM's `token_ids` (None: the
    #: engine does not say them, a server, or the answer was interrupted; not in `to_dict`: the JSON
    #: stays OpenAI's)
    token_ids: list[int] | None = None


@dataclasses.dataclass
class ChatCompletion:
    model: str
    choices: list[Choice]
    usage: Usage
    timings: Timings
    id: str = dataclasses.field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = dataclasses.field(default_factory=lambda: int(time.time()))
    object: str = "chat.completion"

    @property
    def content(self) -> str:
        return self.choices[0].message.content

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def token_ids(self) -> list[int] | None:
        """The generated token ids of the first choice (None where the engine does not know them)."""
        return self.choices[0].token_ids

    def to_dict(self) -> dict[str, Any]:
        """The JSON that `--json` prints: OpenAI's fields, plus mmchat's timings."""
        u, t = self.usage, self.timings
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": c.index,
                    "message": {"role": c.message.role, "content": c.message.content},
                    "finish_reason": c.finish_reason,
                }
                for c in self.choices
            ],
            "usage": {
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
                "prompt_tokens_details": {
                    "cached_tokens": u.cached_tokens,
                    "image_tokens": u.image_tokens,
                    "audio_tokens": u.audio_tokens,
                    "encoded_media": u.encoded_media,
                    "frames_skipped": u.frames_skipped,
                },
                # OpenAI's names for predicted tokens the model kept and dropped: here, drafts from the prompt
                "completion_tokens_details": {
                    "accepted_prediction_tokens": u.draft_accepted,
                    "rejected_prediction_tokens": u.draft_rejected,
                },
            },
            "timings": {
                "load_s": round(t.load, 4),
                "media_decode_s": round(t.media_decode, 4),
                "media_encode_s": round(t.media_encode, 4),
                "prompt_s": round(t.prompt, 4),
                "generation_s": round(t.generation, 4),
                "first_token_s": round(t.first_token, 4),
                "generation_tokens_per_s": round(t.tokens_per_second(u.completion_tokens), 2),
                **({"ran_on": t.ran_on.as_dict()} if t.ran_on is not None else {}),
            },
        }


@dataclasses.dataclass
class Delta:
    content: str
    role: str = "assistant"


@dataclasses.dataclass
class ChunkChoice:
    delta: Delta
    finish_reason: str | None = None
    index: int = 0


@dataclasses.dataclass
class ChatCompletionChunk:
    """One piece of a streamed answer, as OpenAI's (and mistral.rs's) streams send it."""

    id: str
    model: str
    choices: list[ChunkChoice]
    created: int
    usage: Usage | None = None  # on the last chunk only
    object: str = "chat.completion.chunk"


class CompletionStream:
    """Iterate for text deltas; `.completion` holds the whole result once iteration ends.

    Stopped early (Ctrl-C, a closed pipe), `partial()` is the result so far: the text that
    came, finish_reason "interrupted", and the usage counted up to there.
    """

    def __init__(
        self,
        events: Iterator[Event],
        model: str,
        extra: Timings | None = None,
        on_complete: Callable[[ChatCompletion], None] | None = None,
    ):
        self._events = events
        self._on_complete = on_complete  # told once, when the whole answer is in
        self._model = model
        self._extra = extra or Timings()
        self._parts: list[str] = []
        self._started: Started | None = None
        self.completion: ChatCompletion | None = None

    def __iter__(self) -> Iterator[str]:
        for event in self._events:
            if isinstance(event, Started):
                self._started = event
            elif isinstance(event, Finished):
                self.completion = self._result(event.finish_reason, event.usage, event.timings, event.token_ids)
                if self._on_complete is not None:
                    self._on_complete(self.completion)
            else:
                self._parts.append(event)
                yield event

    def _result(
        self, finish_reason: str, usage: Usage, timings: Timings, token_ids: list[int] | None = None
    ) -> ChatCompletion:
        timings.load, timings.media_decode = self._extra.load, self._extra.media_decode
        if timings.first_token:
            timings.first_token += self._extra.media_decode
        choice = Choice(ChatMessage(self.text), finish_reason, token_ids=token_ids)
        return ChatCompletion(model=self._model, choices=[choice], usage=usage, timings=timings)

    def partial(self) -> ChatCompletion:
        """What an interrupted stream produced, shaped like a finished one."""
        if self.completion is not None:
            return self.completion
        usage, timings = (self._started.usage, self._started.timings) if self._started else (Usage(), Timings())
        return self._result("interrupted", dataclasses.replace(usage), dataclasses.replace(timings))

    def chunks(self) -> Iterator[ChatCompletionChunk]:
        """The stream as chunk objects: one per text delta, then one with the finish reason and usage."""
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        try:
            for text in self:
                yield ChatCompletionChunk(cid, self._model, [ChunkChoice(Delta(text))], created)
            done = self.completion or self.partial()
            yield ChatCompletionChunk(
                cid, self._model, [ChunkChoice(Delta(""), done.finish_reason)], created, done.usage
            )
        finally:
            self.close()

    @property
    def text(self) -> str:
        """What has been generated so far (all of it once iteration ends)."""
        return "".join(self._parts)

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close:
            close()
