"""A real OpenAI-compatible multimodal server: llama-cpp-python's own, on the tiny models.

Started once for the module on a free port of 127.0.0.1 and stopped by its fixture. Greedy
answers through it must equal mmchat's local answers byte for byte: mmchat decodes the media
and sends lossless PNG frames and images, so the server's llama.cpp sees the same pixels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import GREEDY_ARGS, llama_cpp_server, model_args, run_mmchat
from tests.support.mediafiles import noise_png
from tests.support.videofiles import write_video


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    try:
        with llama_cpp_server(models, log) as url:
            yield url
    except RuntimeError as e:
        pytest.fail(f"{e}: {Path(log.name).read_text()[-2000:]}")
        log.close()


def local(models: dict[str, Path]) -> list[str]:
    return model_args(models, greedy=False)


def test_a_png_and_a_video_answer_through_the_server_exactly_as_locally(server, models, tmp_path):
    png = noise_png(tmp_path / "p.png", size=(64, 48))
    video = write_video(tmp_path / "v.mp4", 3)
    for media in (["-i", str(png)], ["--video", str(video), "--fps", "1"]):
        here = run_mmchat("ask", "What is this?", *media, *local(models), *GREEDY_ARGS)
        there = run_mmchat(
            "ask", "What is this?", *media, "--base-url", server, "--modalities", "image,video", *GREEDY_ARGS
        )
        assert here.returncode == 0 and there.returncode == 0, here.stderr + there.stderr
        assert there.stdout == here.stdout and here.stdout.strip()


def test_a_batch_through_the_server_in_parallel_keeps_input_order_and_answers(server, tmp_path):
    files = [str(noise_png(tmp_path / f"p{i}.png", seed=i, size=(48, 32))) for i in range(4)]
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "max_tokens": 6 + i,
                        "temperature": 0,
                        "messages": [
                            {
                                "role": "user",
                                "content": [
                                    {"type": "image_url", "image_url": {"url": f}},
                                    {"type": "text", "text": "Describe."},
                                ],
                            }
                        ],
                    },
                }
            )
            + "\n"
            for i, f in enumerate(files)
        )
    )
    flags = ["--base-url", server, "--modalities", "image"]
    parallel = run_mmchat("batch", "-i", str(requests), *flags, "--concurrency", "2")
    one_by_one = run_mmchat("batch", "-i", str(requests), *flags)
    assert parallel.returncode == 0 and one_by_one.returncode == 0, parallel.stderr + one_by_one.stderr
    got = [json.loads(line) for line in parallel.stdout.splitlines()]
    want = [json.loads(line) for line in one_by_one.stdout.splitlines()]
    assert [g["custom_id"] for g in got] == ["r0", "r1", "r2", "r3"]

    def answer(line):
        return line["response"]["body"]["choices"][0]["message"]["content"]

    assert [answer(g) for g in got] == [answer(w) for w in want]
    assert all(answer(g) for g in got)


def test_a_schema_and_a_grammar_constrain_the_servers_answers_as_they_do_locally(server, models, tmp_path):
    """The schema travels as llama-cpp-python's response_format and the grammar as its `grammar`;
    the server's llama.cpp makes the same grammar mmchat makes locally, so greedy answers agree."""
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "colour": {"enum": ["red", "green", "blue"]}},
        "required": ["ok", "colour"],
        "additionalProperties": False,
    }
    gbnf = tmp_path / "answer.gbnf"
    gbnf.write_text('root ::= ("yes" | "no") " because " [a-z]+ "."\n')
    answers = []
    for constraint in (["--schema", json.dumps(schema)], ["--grammar", str(gbnf)]):
        here = run_mmchat("ask", "Is it ok?", *constraint, *local(models), *GREEDY_ARGS, "-n", "48")
        there = run_mmchat("ask", "Is it ok?", *constraint, "--base-url", server, *GREEDY_ARGS, "-n", "48")
        assert here.returncode == 0 and there.returncode == 0, here.stderr + there.stderr
        assert there.stdout == here.stdout
        answers.append(there.stdout.decode())
    answer = json.loads(answers[0])
    assert (
        set(answer) == {"ok", "colour"}
        and isinstance(answer["ok"], bool)
        and answer["colour"] in ("red", "green", "blue")
    )
    assert re.fullmatch(r"(yes|no) because [a-z]+\.?\n", answers[1])  # the "." unless -n cut it short
