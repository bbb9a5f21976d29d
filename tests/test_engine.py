"""The real llama.cpp path on the generated tiny models: determinism, media, fidelity, reuse."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mmchat import Runner, audio_part, image_part, text_part
from mmchat.errors import ContextOverflow, UnsupportedMedia
from tests.support.helpers import GREEDY, THREADS, invoke_real, logged, model_args
from tests.support.mediafiles import noise_png, tone_wav

HERE = Path(__file__).parent


def ask(runner: Runner, *parts, **options) -> str:
    reply = runner.chat([{"role": "user", "content": list(parts)}], **{**GREEDY, **options})
    return reply.choices[0].message.content


@pytest.fixture(scope="module")
def vision(models):
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        yield r


@pytest.fixture(scope="module")
def omni(models):
    with Runner(models["llm"], models["mmproj-omni"], n_ctx=4096, threads=THREADS) as r:
        yield r


@pytest.fixture
def png_a(tmp_path):
    return noise_png(tmp_path / "a.png", seed=1)


@pytest.fixture
def png_b(tmp_path):
    return noise_png(tmp_path / "b.png", seed=2)


def test_greedy_is_identical_across_runs_and_thread_counts(models, png_a):
    prompt = [image_part(str(png_a)), text_part("Describe the image.")]
    answers = []
    for threads in (1, 2, 2):
        with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=threads) as r:
            answers.append(ask(r, *prompt))
    assert answers[0] and answers[0] == answers[1] == answers[2]


def test_answer_follows_the_pixels(vision, png_a, png_b):
    a = ask(vision, image_part(str(png_a)), text_part("Describe."))
    b = ask(vision, image_part(str(png_b)), text_part("Describe."))
    assert a != b


def test_image_order_matters(vision, png_a, png_b):
    ab = ask(vision, image_part(str(png_a)), image_part(str(png_b)), text_part("Compare."))
    ba = ask(vision, image_part(str(png_b)), image_part(str(png_a)), text_part("Compare."))
    assert ab != ba


def test_audio_alone_with_the_audio_projector(models, tmp_path):
    wav = tone_wav(tmp_path / "tone.wav", seconds=2)
    with Runner(models["llm"], models["mmproj-audio"], n_ctx=2048, threads=THREADS) as r:
        assert r.capabilities().kinds == ("audio",)
        reply = r.chat(
            [{"role": "user", "content": [audio_part(str(wav)), text_part("Transcribe.")]}],
            **{**GREEDY, "max_tokens": 12},
        )
    assert reply.usage.audio_tokens == 750 and reply.usage.image_tokens == 0
    assert reply.content and reply.usage.completion_tokens == 12


def test_image_and_audio_together_with_the_omni_projector(omni, png_a, tmp_path):
    wav = tone_wav(tmp_path / "tone.wav")
    both = omni.chat(
        [{"role": "user", "content": [image_part(str(png_a)), audio_part(str(wav)), text_part("What?")]}], **GREEDY
    )
    image_only = omni.chat([{"role": "user", "content": [image_part(str(png_a)), text_part("What?")]}], **GREEDY)
    assert both.usage.image_tokens == 16 and both.usage.audio_tokens == 750
    assert both.usage.prompt_tokens > image_only.usage.prompt_tokens + 750
    assert both.content != image_only.content


def test_audio_refused_by_a_vision_model_before_any_read(vision):
    with pytest.raises(UnsupportedMedia, match="takes images, not audio"):
        ask(vision, audio_part("/nonexistent/talk.mp3"), text_part("Hi"))


def test_prompt_longer_than_the_context_is_refused_with_both_counts(models):
    with Runner(models["llm"], None, n_ctx=256, threads=THREADS) as r:
        n_ctx = r.capabilities().n_ctx
        with pytest.raises(ContextOverflow, match=rf"the prompt is \d+ tokens but the context holds {n_ctx}"):
            ask(r, text_part("word " * n_ctx))


def test_stop_string_ends_the_answer_without_showing_it(vision, png_a):
    full = ask(vision, image_part(str(png_a)), text_part("Describe."), max_tokens=24)
    stop = full[5:8]
    cut = ask(vision, image_part(str(png_a)), text_part("Describe."), max_tokens=24, stop=[stop])
    assert cut == full[: full.index(stop)]


def test_model_without_template_uses_the_plain_format_with_a_notice(models):
    with logged("mmchat.engine", logging.INFO) as notices:
        with Runner(models["llm-notemplate"], None, n_ctx=512, threads=THREADS) as r:
            assert "User: Hi\nAssistant:" in r.prompt([{"role": "user", "content": "Hi"}])
    assert len(notices) == 1 and "no chat template" in notices[0]


def test_builtin_template_by_name(models):
    with Runner(models["llm-notemplate"], None, n_ctx=512, threads=THREADS, chat_template="chatml") as r:
        prompt = r.prompt([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def _reference_ids(models, mmproj: str, prompt: str, files: list[Path], n: int) -> list[int]:
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "support" / "llama_reference.py"),
            str(models["llm"]),
            str(models[mmproj]),
            prompt,
            str(n),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_same_tokens_as_llama_cpps_own_file_path(models, tmp_path, kind):
    """mmchat decodes media itself; the result must equal libmtmd opening the file."""
    if kind == "image":
        path, mmproj, part = noise_png(tmp_path / "x.png", seed=7), "mmproj-vision", image_part
    else:
        path, mmproj, part = tone_wav(tmp_path / "x.wav", seconds=1.5, freq=330), "mmproj-audio", audio_part
    with Runner(models["llm"], models[mmproj], n_ctx=4096, threads=THREADS) as r:
        messages = [{"role": "user", "content": [part(str(path)), text_part("Describe it.")]}]
        ours = r.chat(messages, **{**GREEDY, "max_tokens": 16}).token_ids
        prompt = r.prompt(messages)
    assert len(ours) == 16
    assert _reference_ids(models, mmproj, prompt, [path], 16) == ours


def test_follow_up_reuses_the_cache_and_answers_like_a_fresh_engine(models, png_a):
    first = [{"role": "user", "content": [image_part(str(png_a)), text_part("Describe.")]}]
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        reply1 = r.chat(first, **GREEDY)
        a1 = reply1.content
        encodes = r.engine.stats.media_encodes
        evaluated = r.engine.stats.prompt_tokens_evaluated
        convo = first + [{"role": "assistant", "content": a1}, {"role": "user", "content": "And the colours?"}]
        second = r.chat(convo, **GREEDY)
        assert r.engine.stats.media_encodes == encodes == 1
        new_tokens = r.engine.stats.prompt_tokens_evaluated - evaluated
        assert second.usage.cached_tokens > 16 and new_tokens == second.usage.prompt_tokens - second.usage.cached_tokens
        # everything of turn 1 (its prompt and the answer's tokens) came from the cache
        assert second.usage.cached_tokens == reply1.usage.prompt_tokens + reply1.usage.completion_tokens
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as fresh:
        assert fresh.chat(convo, **GREEDY).content == second.content


def test_placeholders_put_the_markers_where_they_stand(vision, png_a, png_b):
    from mmchat import user_message

    placed = user_message("Between [[2]] and [[1]], what changed?", [image_part(str(png_a)), image_part(str(png_b))])
    default = user_message("Between them, what changed?", [image_part(str(png_a)), image_part(str(png_b))])
    marker = "<__media__>"
    prompt = vision.prompt([placed])
    assert (
        prompt.index("Between ")
        < prompt.index(marker)
        < prompt.index(" and ")
        < prompt.rindex(marker)
        < prompt.index(", what")
    )
    turns = vision.prepare([placed])
    assert [s.digest() for s in turns[0].segments if not isinstance(s, str)] == [
        s.digest() for s in reversed([x for x in vision.prepare([default])[0].segments if not isinstance(x, str)])
    ]
    assert vision.chat([placed], **GREEDY).content != vision.chat([default], **GREEDY).content


def test_evicted_embeddings_are_encoded_again_not_lost(models, png_a, png_b):
    """A cached image goes in as a pixel-less placeholder; if its embeddings leave the cache
    mid-request, the engine tokenizes with pixels again and the answer does not change."""
    from mmchat.engine.llamacpp import LlamaCppEngine

    one = LlamaCppEngine(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS, media_memory_bytes=1)
    with Runner(engine=one) as r:  # memory only, with room for one image's embeddings
        r.chat([{"role": "user", "content": [image_part(str(png_a)), text_part("A?")]}], **GREEDY)
        both = [{"role": "user", "content": [image_part(str(png_b)), image_part(str(png_a)), text_part("Both?")]}]
        answer = r.chat(both, **GREEDY).content
        assert r.engine.stats.media_encodes == 3  # a, b, then a again after b pushed it out
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as fresh:
        assert fresh.chat(both, **GREEDY).content == answer


def test_a_chat_template_that_is_no_file_nor_name_is_refused(models):
    from mmchat.errors import InputError

    with pytest.raises(InputError, match="neither a Jinja template nor a llama.cpp built-in name"):
        Runner(models["llm-notemplate"], None, chat_template="chatmll")


# ChatML as published in a model's tokenizer_config.json (internlm/internlm2-chat-20b-sft, commit 72a7eb1; the same
# text as teknium/OpenHermes-2.5-Mistral-7B's): what a user saves to a file for a GGUF that came without a template
CHATML_FILE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_chat_template_file_makes_a_model_without_one_answer_as_with_its_own(models, tmp_path):
    """llm and llm-notemplate have the same weights; llm carries a ChatML template, the other none."""
    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML_FILE)
    bare = model_args(models, None, model="llm-notemplate")
    own = invoke_real("ask", "Hello there", *model_args(models, None), "--json")
    given = invoke_real("ask", "Hello there", *bare, "--chat-template", str(template), "--json")
    plain = invoke_real("ask", "Hello there", *bare, "--json")
    assert own.exit_code == given.exit_code == plain.exit_code == 0, own.output + given.output + plain.output
    answer = json.loads(own.stdout)
    assert json.loads(given.stdout)["choices"] == answer["choices"]
    assert json.loads(given.stdout)["usage"]["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert "no chat template" not in given.stderr and "no chat template" in plain.stderr
    assert json.loads(plain.stdout)["usage"]["prompt_tokens"] != answer["usage"]["prompt_tokens"]  # User:/Assistant:
    template.write_text("{% for message in messages %}{{ message['content'] }")
    broken = invoke_real(
        "ask",
        "Hello",
        *model_args(models, None, model="llm-notemplate", greedy=False, threads=False),
        "--chat-template",
        str(template),
    )
    assert broken.exit_code == 2 and broken.stdout == ""
    assert (
        broken.stderr.startswith("mmchat: error: the chat template does not compile (")
        and broken.stderr.count("\n") == 1
    )


@pytest.mark.parametrize("llm, mmproj", [("llm-qwen2vl", "mmproj-qwen2vl"), ("llm-qwen3vl", "mmproj-qwen3vl")])
def test_m_rope_models_match_llama_cpp_and_reuse_the_cache(models, tmp_path, llm, mmproj):
    """Qwen-VL place image tokens on a 2-D grid of positions (M-RoPE): the KV bookkeeping must
    follow positions, not token counts, for reuse to give the same answer as a fresh engine."""
    png = noise_png(tmp_path / "q.png", seed=11)  # 96x64: 24 tokens on 6 positions
    first = [{"role": "user", "content": [image_part(str(png)), text_part("Describe it.")]}]
    with Runner(models[llm], models[mmproj], n_ctx=2048, threads=THREADS) as r:
        reply = r.chat(first, **{**GREEDY, "max_tokens": 16})
        ours = reply.token_ids
        prompt = r.prompt(first)
        convo = first + [{"role": "assistant", "content": reply.content}, {"role": "user", "content": "More?"}]
        second = r.chat(convo, **GREEDY)
        assert r.engine.stats.media_encodes == 1 and second.usage.cached_tokens > reply.usage.image_tokens
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "support" / "llama_reference.py"),
            str(models[llm]),
            str(models[mmproj]),
            prompt,
            "16",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout) == ours
    with Runner(models[llm], models[mmproj], n_ctx=2048, threads=THREADS) as fresh:
        assert fresh.chat(convo, **GREEDY).content == second.content
