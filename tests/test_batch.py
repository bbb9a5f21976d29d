"""`mmchat batch`: OpenAI Batch lines in and out, a bad line failing alone, resume, Ctrl-C, order."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.support.helpers import (
    MMCHAT,
    invoke,
    invoke_real,
    mmchat_env,
    model_args,
    run_mmchat,
)
from tests.support.mediafiles import noise_png, tone_wav
from tests.support.stubserver import Reply, Stub, echo, serve


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def request(custom_id: str, content, **body) -> str:
    return (
        json.dumps(
            {
                "custom_id": custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": content}], **body},
            }
        )
        + "\n"
    )


@pytest.fixture
def files(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x00\x9fnot a photo, nor a PDF or text" + bytes(range(256)))
    return [
        str(noise_png(tmp_path / "a.png", size=(40, 30))),
        str(broken),
        str(tone_wav(tmp_path / "b.wav")),
        str(tmp_path / "gone.png"),
    ]


def test_pdfs_and_text_files_are_requests_of_their_own(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Quarterly total: 12")
    pdf.output(str(tmp_path / "report.pdf"))
    (tmp_path / "notes.txt").write_text("buy milk\n")
    result, fake = invoke("batch", "Summarize.", str(tmp_path / "report.pdf"), str(tmp_path / "notes.txt"))
    assert result.exit_code == 0, result.output
    report, notes = (o["response"]["body"]["choices"][0]["message"]["content"] for o in lines(result.stdout))
    assert "[page 1 of report.pdf]" in report and "[image" in report and "Quarterly total: 12" in report
    assert "[file notes.txt]" in notes and "buy milk" in notes


def test_one_line_per_file_in_order_and_a_broken_file_fails_only_its_own(files):
    result, fake = invoke("batch", "Describe it.", *files)
    assert result.exit_code == 1
    out = lines(result.stdout)
    assert [o["custom_id"] for o in out] == files
    ok, broken, audio, gone = out
    assert ok["error"] is None and ok["response"]["status_code"] == 200
    assert ok["response"]["body"]["object"] == "chat.completion"
    assert ok["response"]["body"]["choices"][0]["message"]["content"].startswith("[image 40x30")
    assert audio["response"]["body"]["choices"][0]["message"]["content"].startswith("[audio")  # kind by its bytes
    assert broken["response"] is None and broken["error"]["code"] == "media_error"
    assert gone["error"] == {"code": "source_error", "message": f"file not found: {files[3]}"}
    assert len(fake.calls) == 2  # the model was asked only for the readable files
    assert result.stderr.strip() == "mmchat: 2 of 4 requests failed: their lines say why"


def test_every_line_succeeding_exits_0_with_nothing_on_stderr(files):
    result, _ = invoke("batch", "Describe it.", files[0], files[2], "-t", "0")
    assert result.exit_code == 0 and result.stderr == ""
    assert len(lines(result.stdout)) == 2


def test_openai_batch_input_each_lines_options_and_errors_apply_to_it_alone(tmp_path, files):
    image = [{"type": "image_url", "image_url": {"url": files[0]}}, {"type": "text", "text": "what?"}]
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    (tmp_path / "in.jsonl").write_text(
        request("plain", image, max_completion_tokens=5, temperature=0, seed=3, model="ignored-here")
        + "not json at all\n"
        + json.dumps({"method": "POST", "body": {"messages": []}})
        + "\n"
        + request("hot", "hello", temperature=-1)
        + "\n"
        + request("odd", "hello", logit_bias={"1": 2})
        + request("shaped", "hello", response_format=schema)
        + request("gone", [{"type": "image_url", "image_url": {"url": files[3]}}])
    )
    result, fake = invoke("batch", "-i", str(tmp_path / "in.jsonl"), "-n", "50")
    out = lines(result.stdout)
    assert result.exit_code == 1
    assert [o["custom_id"] for o in out] == ["plain", None, None, "hot", "odd", "shaped", "gone"]
    assert [o["error"]["code"] if o["error"] else "ok" for o in out] == [
        "ok",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "ok",
        "source_error",
    ]
    assert "line 2 is not JSON" in out[1]["error"]["message"]
    assert "line 3 has no custom_id" in out[2]["error"]["message"]
    assert out[3]["error"]["message"] == "line 4: temperature=-1 is not valid: give a number >= 0 (0 is greedy)"
    assert "unknown field 'logit_bias'" in out[4]["error"]["message"]
    plain, shaped = fake.calls[0][1], fake.calls[1][1]
    assert (plain.max_tokens, plain.temperature, plain.seed) == (5, 0, 3)
    assert shaped.max_tokens == 50 and shaped.schema == {"type": "object"}  # flag default; the schema for the engine


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "requests file not found"),
        ("", "holds no requests"),
        (request("same", "a") + request("same", "b"), "custom_id 'same' is given twice"),
    ],
)
def test_input_that_cannot_be_used_at_all_exits_2(tmp_path, content, words):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content)
    result, fake = invoke("batch", "-i", str(path))
    assert result.exit_code == 2 and words in result.stderr and fake.calls == []
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, words",
    [
        (["-i", "x.jsonl", "a prompt"], "not both"),
        (["a prompt"], "at least one file"),
        (["p", "a.png", "--resume"], "--resume needs -o"),
    ],
)
def test_usage_mistakes_exit_2(args, words):
    result, _ = invoke("batch", *args)
    assert result.exit_code == 2 and words in result.stderr


def test_resume_skips_what_succeeded_and_runs_again_what_failed(tmp_path, files):
    out = tmp_path / "results.jsonl"
    first, fake = invoke("batch", "Describe.", files[0], files[1], "-o", str(out))
    assert first.exit_code == 1 and first.stdout == ""
    assert [o["error"] is None for o in lines(out.read_text())] == [True, False]
    noise_png(tmp_path / "broken.jpg", seed=2)  # the user fixes the broken file
    with out.open("a") as f:
        f.write('{"custom_id": "cut sho')  # a line a kill cut short
    again, fake = invoke("batch", "Describe.", files[0], files[1], "-o", str(out), "--resume")
    assert again.exit_code == 0, again.output
    assert len(fake.calls) == 1  # only the one that had failed
    result = lines(out.read_text())
    assert [o["custom_id"] for o in result] == [files[0], files[1]]
    assert all(o["error"] is None for o in result)


def test_concurrency_sends_requests_at_once_and_keeps_input_order(tmp_path):
    words = [f"w{i}" for i in range(6)]

    def slow_first(body, attempt):  # earlier requests answer later
        reply = echo(body, attempt)
        return Reply(text=reply.text, delay=0.05 * (6 - int(reply.text[1:])))

    path = tmp_path / "in.jsonl"
    path.write_text("".join(request(w, w) for w in words))
    with serve(Stub(reply=slow_first)) as stub:
        result = invoke_real("batch", "-i", str(path), "--base-url", stub.url, "--concurrency", "3")
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert [o["custom_id"] for o in out] == words
    assert [o["response"]["body"]["choices"][0]["message"]["content"] for o in out] == words
    assert stub.most_in_flight >= 2


def test_a_local_model_answers_one_at_a_time_whatever_concurrency_says(files):
    result, fake = invoke("batch", "Describe.", files[0], files[2], "--concurrency", "4")
    assert result.exit_code == 0
    assert "a local model answers one request at a time" in result.stderr and len(fake.calls) == 2


def test_answers_are_byte_identical_to_a_loop_of_ask_with_one_model_load(models, tmp_path):
    files = [str(noise_png(tmp_path / f"p{i}.png", seed=i, size=(48, 32))) for i in range(3)]
    model = model_args(models)
    batch = run_mmchat("batch", "Describe.", *files, *model)
    assert batch.returncode == 0, batch.stderr
    got = [o["response"]["body"]["choices"][0]["message"]["content"] for o in lines(batch.stdout)]
    asks = [run_mmchat("ask", "Describe.", "-i", f, *model).stdout.decode() for f in files]
    assert [g + "\n" for g in got] == asks and len(set(got)) == 3


def test_ctrl_c_stops_after_the_current_request_keeping_every_finished_line(models, tmp_path):
    png = noise_png(tmp_path / "p.png", size=(48, 32))
    files = [str(png)] * 60
    out = tmp_path / "results.jsonl"
    args = [
        "batch",
        "Describe.",
        *files,
        "-o",
        str(out),
        *model_args(models, greedy=False),
        "-t",
        "0",
        "-n",
        "400",
        "--ignore-eos",
    ]
    proc = subprocess.Popen(
        [*MMCHAT, *args],
        env=mmchat_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or not out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping after the current request" in err
    done = lines(out.read_text())  # every line whole: the request in flight finished
    assert 1 <= len(done) < 60 and all(o["error"] is None for o in done)
    assert all(o["response"]["body"]["usage"]["completion_tokens"] == 400 for o in done)


def test_nothing_is_logged_unless_asked_and_with_log_each_request_is_a_conversation(files):
    from mmchat import log as logs

    quiet, _ = invoke("batch", "Describe.", files[0], files[2])
    assert quiet.exit_code == 0 and not logs.log_path().exists()
    logged, _ = invoke("batch", "Describe.", files[0], files[2], "--log")
    assert logged.exit_code == 0, logged.output
    shown, _ = invoke("logs", "--json")
    conversations = json.loads(shown.stdout)
    refs = {json.dumps(c["turns"][0]["messages"][0]["content"][0]) for c in conversations}
    assert len(conversations) == 2 and all(len(c["turns"]) == 1 for c in conversations)
    assert all(any(f in ref for ref in refs) for f in (files[0], files[2]))


def test_a_lines_video_part_options_apply_to_that_line_alone(tmp_path):
    from tests.support.videofiles import write_video

    video = str(write_video(tmp_path / "clip.mp4", 4))
    (tmp_path / "in.jsonl").write_text(
        request("two", [{"type": "video_url", "video_url": {"url": video, "max_frames": 2}}])
        + request("all", [{"type": "video_url", "video_url": {"url": video}}])
        + request("bad", [{"type": "video_url", "video_url": {"url": video, "fps": 0}}])
    )
    result, fake = invoke("batch", "-i", str(tmp_path / "in.jsonl"), "--fps", "1")
    two, everything, bad = lines(result.stdout)
    frames = [o["response"]["body"]["choices"][0]["message"]["content"].count("[image") for o in (two, everything)]
    assert frames == [2, 4]
    assert bad["error"]["code"] == "invalid_request" and "video fps 0" in bad["error"]["message"]
