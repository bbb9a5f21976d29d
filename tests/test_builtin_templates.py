"""A chat template that is a llama.cpp built-in name renders as llama.cpp renders that name.

Some GGUFs carry the name instead of Jinja: ggml-org's moondream2 text model is published as
`moondream2-text-model-f16_ct-vicuna.gguf` and its `tokenizer.chat_template` is the word `vicuna`.
The tiny models here carry such names in the same key; the expected prompts come from
llama.cpp's own `llama_chat_apply_template`, called below through the bindings, not through mmchat.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import llama_cpp
import pytest

from mmchat import Runner, image_part, text_part
from mmchat.errors import ModelLoadError
from tests.support.gguf_models import write_text_model
from tests.support.helpers import GREEDY, THREADS, run_mmchat
from tests.support.mediafiles import noise_png

pytestmark = pytest.mark.model  # every test here loads a tiny GGUF or starts a process (Xvfb, mmchat)

HERE = Path(__file__).parent
NAMES = ["vicuna", "vicuna-orca", "chatml", "llama3", "gemma", "llama2", "mistral-v7", "phi3", "zephyr", "deepseek"]


def llama_cpp_prompt(name: str, messages: list[tuple[str, str]]) -> str:
    """llama.cpp's rendering of `messages` with its built-in format `name` (generation prompt added)."""
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(role.encode(), content.encode()) for role, content in messages]
    )
    n = llama_cpp.llama_chat_apply_template(name.encode(), chat, len(messages), True, None, 0)
    assert n > 0, f"llama.cpp does not know {name!r}"
    buf = ctypes.create_string_buffer(n + 1)
    assert llama_cpp.llama_chat_apply_template(name.encode(), chat, len(messages), True, buf, n + 1) == n
    return buf.raw[:n].decode()


def llama_cpp_names() -> list[str]:
    n = llama_cpp.llama_chat_builtin_templates(None, 0)
    arr = (ctypes.c_char_p * n)()
    llama_cpp.llama_chat_builtin_templates(arr, n)
    return [a.decode() for a in arr]


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> dict[str, Path]:
    """A tiny text model per name, each with the bare name as its tokenizer.chat_template."""
    directory = tmp_path_factory.mktemp("named-templates")
    return {name: write_text_model(directory / f"llm-{name}.gguf", chat_template=name) for name in [*NAMES, "vicunaa"]}


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("named-pngs")
    return noise_png(directory / "a.png", seed=3), noise_png(directory / "b.png", seed=4)


def conversation(a: Path, b: Path) -> list[dict]:
    return [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                text_part("Compare"),
                image_part(str(a)),
                text_part("with"),
                image_part(str(b)),
                text_part("please."),
            ],
        },
        {"role": "assistant", "content": "They differ."},
        {"role": "user", "content": "How?"},
    ]


def expected(name: str, marker: str) -> str:
    """What llama.cpp makes of conversation(): each image the marker, where the user put it."""
    return llama_cpp_prompt(
        name,
        [
            ("system", "Be brief."),
            ("user", f"Compare{marker}with{marker}please."),
            ("assistant", "They differ."),
            ("user", "How?"),
        ],
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_name_in_the_gguf_renders_as_llama_cpps_built_in(models, named, pngs, name):
    with Runner(named[name], models["mmproj-vision"], n_ctx=2048, threads=THREADS, cache=False) as r:
        assert r.prompt(conversation(*pngs)) == expected(name, "<__media__>")
        assert r.engine.count_tokens(r.prepare(conversation(*pngs))) > 2 * 16  # both images really go in


@pytest.mark.parametrize("name", ["llama3", "gemma", "vicuna"])
def test_chat_template_name_overrides_the_ggufs_jinja(models, pngs, name):
    with Runner(
        models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS, cache=False, chat_template=name
    ) as r:
        assert r.prompt(conversation(*pngs)) == expected(name, "<__media__>")


def test_vicuna_answers_like_llama_cpp_given_the_same_prompt_and_image(models, named, pngs):
    """End to end: the image lands where llama.cpp's own path (libmtmd opening the file, the
    prompt from llama_chat_apply_template with mtmd's default marker) puts it: the same tokens."""
    messages = [{"role": "user", "content": [text_part("Look at"), image_part(str(pngs[0])), text_part("and say.")]}]
    with Runner(named["vicuna"], models["mmproj-vision"], n_ctx=4096, threads=THREADS, cache=False) as r:
        ours = r.chat(messages, **{**GREEDY, "max_tokens": 12}).token_ids
    prompt = llama_cpp_prompt("vicuna", [("user", "Look at<__media__>and say.")])
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "support" / "llama_reference.py"),
            str(named["vicuna"]),
            str(models["mmproj-vision"]),
            prompt,
            "12",
            str(pngs[0]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert len(ours) == 12 and json.loads(out.stdout) == ours


def test_an_unknown_name_in_the_gguf_is_one_line_naming_the_known_ones(models, named):
    with pytest.raises(ModelLoadError) as caught:
        Runner(named["vicunaa"], None, n_ctx=512, threads=THREADS)
    message = str(caught.value)
    assert "\n" not in message and "llm-vicunaa.gguf's chat template 'vicunaa'" in message
    assert all(name in message for name in llama_cpp_names()) and "--chat-template" in message
    # a name given with --chat-template fixes such a file
    with Runner(named["vicunaa"], None, n_ctx=512, threads=THREADS, chat_template="vicuna") as r:
        assert r.prompt([{"role": "user", "content": "Hi"}]) == "USER: Hi\nASSISTANT:"


def test_an_unknown_name_is_one_line_and_exit_2_on_the_command_line(named):
    done = run_mmchat("ask", "Hi", "-m", str(named["vicunaa"]), "--threads", str(THREADS), "-n", "2")
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and done.stdout == b"" and len(lines) == 1
    assert "'vicunaa' is neither a Jinja template nor a llama.cpp built-in name" in lines[0] and "chatml" in lines[0]
    done = run_mmchat("ask", "Hi", "-m", str(named["vicuna"]), "--chat-template", "chatmll", "--threads", str(THREADS))
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--chat-template 'chatmll' is neither" in lines[0]
