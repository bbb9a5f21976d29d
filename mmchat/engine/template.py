"""Chat templates: turns -> the prompt string the model was trained on, media as markers.

Media parts become the marker text in place, and a message's parts are joined the way
llama.cpp's server joins them (a newline between text parts, none next to a marker), so a
GGUF's own Jinja template sees plain string content and needs no knowledge of media.

A template is Jinja text or the name of one of llama.cpp's built-in formats: some GGUFs carry
only the name in `tokenizer.chat_template` (ggml-org's moondream2 says `vicuna`), and
`--chat-template chatml` is a name too. A name is rendered by llama.cpp itself
(`llama_chat_apply_template`), the marker inside the content where the media stood.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..errors import InputError, ModelLoadError
from .base import Segment, Turn

log = logging.getLogger("mmchat.engine")

#: render(messages, bos_token=, eos_token=) -> the prompt text
Renderer = Callable[..., str]

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


def is_jinja(text: str) -> bool:
    """Whether a template is Jinja: anything without a tag or an expression renders to itself."""
    return any(tag in text for tag in ("{{", "{%", "{#"))


def builtin_name(text: str, names: Sequence[str]) -> str | None:
    """The llama.cpp built-in format a template names (None: it names none)."""
    name = text.strip()
    return name if name in names else None


def _unknown(text: str, where: str, names: Sequence[str], remedy: str) -> str:
    """The one line that says a template is neither Jinja nor a built-in name, and which names exist."""
    shown = text.strip()
    shown = shown if len(shown) <= 40 else shown[:40] + "…"
    return f"{where} {shown!r} is neither a Jinja template nor a llama.cpp built-in name ({', '.join(names)}): {remedy}"


def chat_renderer(
    given: str | None,
    embedded: str | None,
    *,
    names: Sequence[str],
    apply_builtin: Callable[[str, list[dict[str, str]]], str],
    model_name: str,
) -> tuple[Renderer, tuple[str, ...]]:
    """The renderer for --chat-template (`given`), else the GGUF's own template, else the plain
    format; and the stop strings the format needs. `apply_builtin(name, messages)` is llama.cpp's."""
    source, stop = given if given is not None else embedded, ()
    if source is None:
        log.info(
            f"{model_name} has no chat template: using a plain 'User:/Assistant:' format (set one with --chat-template)"
        )
        source, stop = PLAIN_TEMPLATE, PLAIN_STOP
    name = builtin_name(source, names)
    if name is not None:
        return (lambda messages, **tokens: apply_builtin(name, messages)), stop
    if not is_jinja(source):
        if given is not None:
            raise InputError(_unknown(source, "--chat-template", names, "give a Jinja file or one of these names"))
        raise ModelLoadError(
            _unknown(source, f"{model_name}'s chat template", names, "give one with --chat-template NAME or FILE")
        )
    try:
        render = jinja_renderer(source)
    except Exception as e:  # a template that does not compile is the user's input
        raise InputError(f"the chat template does not compile ({e}): give a Jinja file or a built-in name") from None

    def checked(messages: list[dict[str, str]], **tokens: str) -> str:
        try:
            return render(messages, **tokens)
        except Exception as e:
            raise InputError(f"the chat template failed on these messages: {e}") from None

    return checked, stop


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
