"""Chat templates: turns -> the prompt string the model was trained on, media as markers.

Media parts become the marker text in place, and a message's parts are joined the way
llama.cpp's server joins them (a newline between text parts, none next to a marker), so a
GGUF's own Jinja template sees plain string content and needs no knowledge of media.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .base import Segment, Turn

#: used when a GGUF has no template and none was given: readable by any base model
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
#: what ends an assistant turn in PLAIN_TEMPLATE, so generation stops there
PLAIN_STOP = ("\nUser:",)


def flatten(segments: Sequence[Segment], marker: str) -> str:
    """One message's content as a string: text as is, each media segment as the marker."""
    out = ""
    last_was_marker = False
    for seg in segments:
        if isinstance(seg, str):
            if out and not last_was_marker:
                out += "\n"
            out += seg
            last_was_marker = False
        else:
            out += marker
            last_was_marker = True
    return out


def template_messages(turns: Sequence[Turn], marker: str) -> list[dict[str, str]]:
    return [{"role": t.role, "content": flatten(t.segments, marker)} for t in turns]


def _raise(message: str) -> None:
    raise ValueError(message)


def _tojson(x: Any, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def jinja_renderer(source: str) -> Callable[..., str]:
    """Compile a Hugging Face-style chat template in a sandbox, the way transformers does."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTags(jinja2.ext.Extension):
        """transformers' {% generation %} blocks (training masks) render their body as is."""

        tags = {"generation"}

        def parse(self, parser):
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, GenerationTags]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    compiled = env.from_string(source)

    def render(messages: list[dict[str, str]], *, bos_token: str, eos_token: str) -> str:
        return compiled.render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=True,
        )

    return render
