"""Chat templates: how media markers and text parts become the prompt string (pure)."""

from __future__ import annotations

import numpy as np

from mmchat.engine.base import Turn
from mmchat.engine.template import PLAIN_TEMPLATE, flatten, jinja_renderer, template_messages
from mmchat.media import Image

IMG = Image(np.zeros((2, 2, 3), np.uint8))


def test_text_parts_join_with_newlines_but_never_next_to_a_marker():
    assert flatten(["a", "b", IMG, "c", IMG, IMG, "d"], "<m>") == "a\nb<m>c<m><m>d"


def test_hugging_face_templates_render_with_their_helpers():
    source = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' and not loop.first %}"
        "{{ raise_exception('system first') }}{% endif %}{% generation %}<{{ m['role'] }}>{{ m['content'] | trim }}"
        "{% endgeneration %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    render = jinja_renderer(source)
    msgs = template_messages([Turn("user", (IMG, " What is it? "))], "<m>")
    assert render(msgs, bos_token="<s>", eos_token="</s>") == "<s><user><m> What is it?<assistant>"


def test_the_plain_default_reads_like_a_dialogue():
    render = jinja_renderer(PLAIN_TEMPLATE)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render(msgs, bos_token="", eos_token="") == "Be brief.\n\nUser: Hi\nAssistant:"
