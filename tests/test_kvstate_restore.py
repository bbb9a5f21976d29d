"""Saved KV states on the real llama.cpp path: a continued conversation restores its prefix and
answers exactly as a fresh evaluation does, in this process and in a new one; a bad state is a miss."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mmchat import Runner, audio_part, config, image_part, text_part
from mmchat.engine.kvstate import _HEADER, DiskStates
from tests.support.helpers import (
    GREEDY,
    MMCHAT,
    THREADS,
    logged,
    mmchat_env,
    model_args,
    run_mmchat,
)
from tests.support.mediafiles import noise_png, tone_wav

QUESTION = "Describe what you are given in as much detail as you can, please."


def converse(runner: Runner, part, save: bool = True) -> tuple[list, object]:
    """Turn 1 about a medium (its state saved), and turn 2's conversation."""
    first = [{"role": "user", "content": [part, text_part(QUESTION)]}]
    reply = runner.chat(first, **GREEDY)
    if save:
        assert runner.save_state()
    return first + [{"role": "assistant", "content": reply.content}, {"role": "user", "content": "And then?"}], reply


def fresh_answer(models, llm, mmproj, convo) -> str:
    with Runner(models[llm], models[mmproj], n_ctx=2048, threads=THREADS, cache=False) as r:
        return r.chat(convo, **GREEDY).content


@pytest.mark.parametrize(
    "llm, mmproj, kind",
    [("llm", "mmproj-vision", "image"), ("llm", "mmproj-audio", "audio"), ("llm-qwen2vl", "mmproj-qwen2vl", "image")],
)
def test_a_new_runner_restores_the_saved_state_and_answers_the_same(models, tmp_path, llm, mmproj, kind):
    """Vision, audio, and Qwen-VL's M-RoPE (an image advances the position by its grid, not its tokens)."""
    path = noise_png(tmp_path / "a.png", seed=3) if kind == "image" else tone_wav(tmp_path / "t.wav", seconds=1)
    part = (image_part if kind == "image" else audio_part)(str(path))
    with Runner(models[llm], models[mmproj], n_ctx=2048, threads=THREADS) as r:
        convo, first = converse(r, part)
    with Runner(models[llm], models[mmproj], n_ctx=2048, threads=THREADS) as r:
        second = r.chat(convo, **GREEDY)
        assert r.stats.states_restored == 1 and r.stats.media_encodes == 0
    assert second.usage.cached_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert second.content == fresh_answer(models, llm, mmproj, convo)


def test_a_restored_state_is_cut_back_where_the_conversation_differs(models, tmp_path):
    """An edited last question shares only the prefix before it: the state is restored and cut there."""
    png = noise_png(tmp_path / "a.png", seed=4)
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        convo, first = converse(r, image_part(str(png)))
    edited = [
        {
            "role": "user",
            "content": [image_part(str(png)), text_part("Something else entirely: what is there in the corners?")],
        }
    ]
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        reply = r.chat(edited, **GREEDY)
        assert r.stats.states_restored == 1 and 16 < reply.usage.cached_tokens < first.usage.prompt_tokens
    assert reply.content == fresh_answer(models, "llm", "mmproj-vision", edited)


def _other_model_of_the_same_shapes(models, tmp_path):
    """llm.gguf with the signs of some weights flipped: the same shapes, another model."""
    other = tmp_path / "other.gguf"
    shutil.copy(models["llm"], other)
    data = bytearray(other.read_bytes())
    middle = len(data) // 2 // 32 * 32  # tensor data is 32-byte aligned: whole float32s from here
    for i in range(middle + 3, middle + 8192, 4):
        data[i] ^= 0x80
    other.write_bytes(bytes(data))
    return other


@pytest.mark.parametrize("fault", ["cut short", "noise", "other model", "refused by llama.cpp"])
def test_a_bad_state_is_ignored_with_one_notice_and_the_answer_is_the_same(models, tmp_path, fault):
    png = noise_png(tmp_path / "a.png", seed=5)
    llm = models["llm"]
    with Runner(llm, models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        convo, _ = converse(r, image_part(str(png)))
    (path,) = config.kv_state_dir().glob("*.kvs")
    data = path.read_bytes()
    if fault == "cut short":
        path.write_bytes(data[: len(data) // 2])
    elif fault == "noise":
        path.write_bytes(data[:8] + bytes(reversed(data[8:])))
    elif fault == "other model":
        llm = _other_model_of_the_same_shapes(models, tmp_path)
        with Runner(llm, models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
            identity = r.engine._identity
        path.rename(path.with_name(identity + path.name[32:]))  # the first model's state under the second's name
    else:  # a whole file of ours, checksum and all, whose KV data llama.cpp does not take
        disk = DiskStates(config.kv_state_dir(), 1 << 30)
        state = disk.load(path, path.name[:32])
        header = _HEADER.unpack_from(data)
        path.unlink()
        disk.put(type(state)(state.identity, state.items, state.data[: header[6] // 2]))
    with logged("mmchat.engine") as said, Runner(llm, models["mmproj-vision"], n_ctx=2048, threads=THREADS) as r:
        answer = r.chat(convo, **GREEDY)
        assert r.stats.states_restored == 0
    notes = [m for m in said if "KV state" in m]
    assert len(notes) == 1 and "evaluated as usual" in notes[0]
    assert not list(config.kv_state_dir().glob("*.kvs"))  # removed: the next turn does not trip on it again
    assert answer.usage.cached_tokens == 0
    assert answer.content == fresh_answer(models, "llm", "mmproj-vision", convo) or fault == "other model"
    if fault == "other model":  # its own answer, as a fresh evaluation of that model gives it
        with Runner(llm, models["mmproj-vision"], n_ctx=2048, threads=THREADS, cache=False) as r:
            assert answer.content == r.chat(convo, **GREEDY).content


def _ask(models, *args: str) -> dict:
    out = run_mmchat("ask", *args, *model_args(models), "--json", "-c", "2048")
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


def test_ask_continue_in_a_new_process_restores_the_conversation(models, tmp_path):
    png = noise_png(tmp_path / "a.png", seed=6)
    first = _ask(models, QUESTION, "-i", str(png))
    second = _ask(models, "--continue", "And the colours?")
    done = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == done
    assert second["usage"]["prompt_tokens_details"]["encoded_media"] == 0
    assert len(list(config.kv_state_dir().glob("*.kvs"))) == 1  # one conversation, one state: its latest turn
    third = _ask(models, "--continue", "And the shapes?", "--no-log")  # the second turn's state, saved in its turn
    assert third["usage"]["prompt_tokens_details"]["cached_tokens"] >= done + second["usage"]["completion_tokens"]
    again = _ask(models, "--continue", "And the shapes?", "--no-log", "--no-cache")
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert again["choices"] == third["choices"]


def test_two_processes_continuing_one_conversation_at_once_both_answer_right(models, tmp_path):
    png = noise_png(tmp_path / "a.png", seed=7)
    _ask(models, QUESTION, "-i", str(png))
    flags = [*model_args(models), "-c", "2048", "--json", "--no-log"]
    questions = ["And the colours?", "And the shapes?"]
    procs = [
        subprocess.Popen([*MMCHAT, "ask", "--continue", q, *flags], stdout=subprocess.PIPE, env=mmchat_env())
        for q in questions
    ]
    answers = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(a["usage"]["prompt_tokens_details"]["cached_tokens"] > 16 for a in answers)
    for q, a in zip(questions, answers):
        alone = _ask(models, "--continue", q, "--no-cache", "--no-log")
        assert a["choices"] == alone["choices"]


def test_batch_saves_a_shared_prefix_that_a_later_run_restores(models, tmp_path):
    from tests.support.helpers import invoke_real

    png = noise_png(tmp_path / "a.png", seed=8)
    system = "You are a careful assistant who looks at every picture closely and answers in full sentences."
    lines = [
        json.dumps(
            {
                "custom_id": f"q{i}",
                "body": {
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": [image_part(str(png)), text_part(q)]},
                    ],
                    **GREEDY,
                },
            }
        )
        for i, q in enumerate(["What is it?", "What colour is it?", "How big is it?"])
    ]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    model = [*model_args(models, greedy=False), "-c", "2048"]

    def run(out: str) -> list[dict]:
        result = invoke_real("batch", "-i", str(requests), "-o", str(tmp_path / out), *model)
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in (tmp_path / out).read_text().splitlines()]

    first = run("one.jsonl")
    assert len(list(config.kv_state_dir().glob("*.kvs"))) == 1  # once, when the second request shared the prefix
    second = run("two.jsonl")
    usage = second[0]["response"]["body"]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] > usage["prompt_tokens_details"]["image_tokens"]
    assert [r["response"]["body"]["choices"] for r in first] == [r["response"]["body"]["choices"] for r in second]


def test_the_repl_saves_each_turn_and_load_in_a_new_session_restores_it(models, tmp_path):
    from tests.support.helpers import chat

    png = noise_png(tmp_path / "a.png", seed=9)
    saved = tmp_path / "chat.json"
    options = dict(n_ctx=2048, threads=THREADS)
    with Runner(models["llm"], models["mmproj-vision"], **options) as r:
        code, _ = chat(tmp_path, f"/attach {png}", QUESTION, f"/save {saved}", "/exit", runner=r, options=_greedy())
        assert code == 0 and r.stats.states_saved == 1
    with Runner(models["llm"], models["mmproj-vision"], **options) as r:
        code, out = chat(tmp_path, f"/load {saved}", "And then?", "/exit", runner=r, options=_greedy())
        assert code == 0 and r.stats.states_restored == 1 and r.stats.media_encodes == 0
        restored = r.stats.prompt_tokens_reused
    with Runner(models["llm"], models["mmproj-vision"], cache=False, **options) as r:
        code, fresh = chat(tmp_path, f"/load {saved}", "And then?", "/exit", runner=r, options=_greedy())
        assert r.stats.prompt_tokens_reused == 0 < restored
    assert out.split("/load")[-1] == fresh.split("/load")[-1]  # what the user saw after /load: the same answer


def _greedy():
    from mmchat.options import GenerationOptions

    return GenerationOptions(**GREEDY)
