"""What a file claims against what it holds (issue 24): a kind the user declares (--image, --audio,
--video, an image_url/audio_url/video_url part, /image) and the kind a file's name claims (.png,
.jpg, .mp3, .pdf) must match its bytes, in every entry point: ask, batch, the REPL, the Runner, the
request API and the log's --continue. A text file becomes a text part only as a file (-i, /attach,
a batch file) that nothing claims is a medium. An SVG given as an image is drawn.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from mmchat import ChatCompletionRequest, Runner
from mmchat.errors import InputError
from mmchat.inputs.claims import judge, named
from mmchat.media import Image
from mmchat.messages import file_part, image_part, user_message
from mmchat.testing import FakeEngine
from tests.support.documents import text_pdf
from tests.support.helpers import chat, invoke
from tests.support.mediafiles import noise_png, tone_wav

NOTES = "Meeting notes: buy milk, ship the reader.\n"
SVG = (
    '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 100">'
    '<rect width="100" height="100" fill="#ff0000"/><rect x="100" width="100" height="100" fill="#0000ff"/></svg>\n'
)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "notes.jpg").write_text(NOTES)  # a text file named as a photo (a saved error page, a mix-up)
    (tmp_path / "notes.txt").write_text(NOTES)
    (tmp_path / "Makefile").write_text("all:\n\techo hi\n")
    (tmp_path / "report.png").write_bytes(text_pdf(tmp_path / "r.pdf", 1).read_bytes())  # a PDF named .png
    (tmp_path / "logo.svg").write_text(SVG)
    noise_png(tmp_path / "a.png")
    tone_wav(tmp_path / "talk.wav")
    return tmp_path


def _stderr_line(result) -> str:
    assert result.stdout == "", result.stdout  # nothing answered
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


# -- the rule -------------------------------------------------------------------------------------------


def test_names_claim_kinds_and_text_files_are_those_whose_names_say_text_or_nothing():
    assert [named(n) for n in ("a.JPG", "b.mp3", "c.mp4", "d.pdf", "e.svg", "f.py", "g.md", "Makefile")] == [
        "image",
        "audio",
        "video",
        "pdf",
        "svg",
        "text",
        "text",
        None,
    ]
    assert named("https://example.com/x/photo.png?size=2") == "image" and named("data:audio/wav;base64,AAAA") == "audio"
    assert judge("notes.txt", None, "text") == "text" and judge("Makefile", None, "text") == "text"
    assert judge("song.mp3", "image", "image") == "image"  # a PNG saved as song.mp3 is an image: its bytes decode
    for label, declared, found in [
        ("notes.jpg", None, "text"),
        ("notes.jpg", "image", "text"),
        ("notes.txt", "image", "text"),
        ("notes.txt", "audio", "text"),
        ("report.png", None, "pdf"),
        ("report.pdf", "audio", "pdf"),
        ("scan.mp4", None, "text"),
    ]:
        with pytest.raises(InputError, match=rf"{label} is .* but holds "):
            judge(label, declared, found)


# -- ask ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, claims",
    [
        (["--image", "notes.jpg"], "notes.jpg is named and given as an image but holds text"),
        (["--image", "notes.txt"], "notes.txt is given as an image but holds text"),
        (["-i", "notes.jpg"], "notes.jpg is named as an image but holds text"),
        (["--audio", "notes.txt"], "notes.txt is given as audio but holds text"),
        (["--video", "notes.txt"], "notes.txt is given as a video but holds text"),
        (["-i", "report.png"], "report.png is named as an image but holds a PDF"),
    ],
)
def test_ask_refuses_a_file_whose_bytes_are_not_what_it_claims_in_one_line(files, args, claims):
    flag, name = args
    result, fake = invoke("ask", "What is it?", flag, str(files / name))
    assert result.exit_code == 2 and claims in _stderr_line(result)
    assert fake.calls == []  # the model never saw it


def test_ask_reads_text_files_given_with_i_and_takes_media_by_their_bytes(files):
    for name in ("notes.txt", "Makefile"):
        result, fake = invoke("ask", "Summarize.", "-i", str(files / name))
        assert result.exit_code == 0 and f"[file {name}]" in result.stdout, result.output
    result, fake = invoke("ask", "What is it?", "-i", str(files / "talk.wav"), "-i", str(files / "a.png"))
    assert result.exit_code == 0 and "[audio" in result.stdout and "[image 96x64" in result.stdout, result.output


def test_an_svg_given_as_an_image_is_drawn_at_the_models_size_not_sent_as_xml(files):
    result, fake = invoke("ask", "What is it?", "--image", str(files / "logo.svg"), "--image-max-side", "200")
    assert result.exit_code == 0, result.output
    assert "[image 200x100" in result.stdout and "<svg" not in result.stdout
    pixels = _images(fake)[0].pixels
    assert tuple(pixels[50, 20]) == (255, 0, 0) and tuple(pixels[50, 180]) == (0, 0, 255)


def test_an_svg_cannot_read_other_files_from_this_machine(tmp_path):
    secret = tmp_path / "secret.png"
    PILImage.new("RGB", (10, 10), (0, 255, 0)).save(secret)
    (tmp_path / "peek.svg").write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><image href="{secret}" '
        'width="10" height="10"/></svg>'
    )
    result, fake = invoke("ask", "What is it?", "--image", str(tmp_path / "peek.svg"))
    assert result.exit_code == 0, result.output
    assert not (_images(fake)[0].pixels == np.array([0, 255, 0])).all(axis=-1).any()  # drawn without the file


def _images(fake: FakeEngine) -> list[Image]:
    return [s for turn in fake.calls[-1][0] for s in turn.segments if isinstance(s, Image)]


def _sent(fake: FakeEngine) -> str:
    """The text the model was given in its last call, whole conversation."""
    return " ".join(s for turn in fake.calls[-1][0] for s in turn.segments if isinstance(s, str))


# -- batch, the REPL, the Runner, the request API, the log ------------------------------------------


def test_batch_makes_a_broken_photo_an_error_record_not_a_text_answer(files):
    result, fake = invoke("batch", "Describe.", str(files / "a.png"), str(files / "notes.jpg"))
    assert result.exit_code != 0 or result.stdout  # the batch runs; its records say what happened
    ok, broken = (json.loads(line) for line in result.stdout.splitlines())
    assert ok["response"]["status_code"] == 200
    assert broken["response"] is None and "notes.jpg is named as an image but holds text" in broken["error"]["message"]
    assert all(NOTES.strip() not in " ".join(map(str, call[0][-1].segments)) for call in fake.calls)


def test_the_repl_refuses_a_misnamed_text_file_and_keeps_the_conversation(files, tmp_path):
    runner = Runner(engine=FakeEngine())
    code, out = chat(
        tmp_path,
        "Hello",
        f"/attach {files / 'notes.jpg'}",
        f"/image {files / 'notes.txt'}",
        f"/attach {files / 'notes.txt'}",
        "What do the notes say?",
        "/exit",
        runner=runner,
    )
    assert code == 0
    assert "notes.jpg is named as an image but holds text" in out
    assert "notes.txt is given as an image but holds text" in out
    assert "[file notes.txt]" in out and "Hello" in out  # the good file went, with the conversation before it
    assert "attached file " in out  # said as what it is, not as an image


def test_the_runner_and_the_request_api_follow_the_same_rule(files):
    runner = Runner(engine=FakeEngine())
    with pytest.raises(InputError, match="notes.jpg is named and given as an image but holds text"):
        runner.chat([user_message("What?", [image_part(str(files / "notes.jpg"))])])
    with pytest.raises(InputError, match="notes.jpg is named as an image but holds text"):
        runner.chat([user_message("What?", [file_part(str(files / "notes.jpg"))])])
    answer = runner.chat([user_message("What?", [file_part(str(files / "notes.txt"))])], max_tokens=400).content
    assert "[file notes.txt]" in answer
    request = ChatCompletionRequest(
        messages=[{"role": "user", "content": [image_part(str(files / "notes.jpg")), {"type": "text", "text": "?"}]}],
        model="default",
    )
    with pytest.raises(InputError, match="notes.jpg is named and given as an image but holds text"):
        runner.send_chat_completion_request(request)


def test_openai_file_parts_carry_a_pdf_as_file_data_and_a_file_id_is_refused(files):
    import base64

    data = base64.b64encode((files / "r.pdf").read_bytes()).decode()
    runner = Runner(engine=FakeEngine())
    part = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}", "filename": "r.pdf"}}
    answer = runner.chat([user_message("What?", [part])], max_tokens=400).content
    assert "[page 1 of data: URL]" in answer and "[image" in answer
    with pytest.raises(InputError, match="file_id names a file uploaded to OpenAI"):
        runner.chat([user_message("What?", [{"type": "file", "file": {"file_id": "file-abc"}}])])


def test_continue_sends_a_logged_text_file_again_and_refuses_one_that_became_a_claim(files):
    assert invoke("ask", "Summarize.", "-i", str(files / "notes.txt"))[0].exit_code == 0
    result, fake = invoke("ask", "--continue", "And then?")
    assert result.exit_code == 0 and "[file notes.txt]" in _sent(fake), result.output
    assert invoke("ask", "What is it?", "--image", str(files / "a.png"))[0].exit_code == 0
    (files / "a.png").write_text(NOTES)  # the photo is overwritten with text
    result, fake = invoke("ask", "--continue", "And the colours?")
    assert result.exit_code == 2 and "a.png" in _stderr_line(result) and fake.calls == []


def test_a_log_written_before_file_parts_continues_its_text_file(files, isolated_user_dir):
    """Before issue 24, `-i notes.md` was logged as an image_url part: it comes back as a file part."""
    import sqlite3

    assert invoke("ask", "Summarize.", "-i", str(files / "notes.txt"))[0].exit_code == 0
    db = sqlite3.connect(isolated_user_dir / "logs.db")
    (cid, messages) = db.execute("SELECT conversation_id, messages FROM turns").fetchone()
    stored = json.loads(messages)
    part = stored[0]["content"][0]
    assert part["type"] == "file"
    stored[0]["content"][0] = {**part, "type": "image_url", "image_url": part.pop("file")}
    del stored[0]["content"][0]["file"]
    db.execute("UPDATE turns SET messages = ?", (json.dumps(stored),))
    db.commit()
    db.close()
    result, fake = invoke("ask", "--continue", "And then?")
    assert result.exit_code == 0 and "[file notes.txt]" in _sent(fake), result.output


def test_a_preview_of_i_shows_what_the_file_turned_out_to_be(files):
    result, _ = invoke("ask", "What?", "-i", f"data:image/png;base64,{_b64(files / 'a.png')}", "--preview")
    assert result.exit_code == 0 and " · file" not in result.stderr


def _b64(path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def test_svg_text_inside_a_web_page_is_text(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(f"<html><body>{SVG}</body></html>")
    result, _ = invoke("ask", "What?", "-i", str(page))
    assert result.exit_code == 0 and "[file page.html]" in result.stdout


def test_a_misnamed_pdf_is_refused_but_a_pdf_given_as_an_image_is_its_pages(files):
    result, _ = invoke("ask", "What?", "--image", str(files / "r.pdf"))
    assert result.exit_code == 0 and "[page 1 of r.pdf]" in result.stdout
    result, _ = invoke("ask", "What?", "--audio", str(files / "r.pdf"))
    assert result.exit_code == 2 and "r.pdf is given as audio but holds a PDF" in _stderr_line(result)


# -- one verdict everywhere ----------------------------------------------------------------------------


def _awkward(d) -> dict[str, str]:
    """Files people really have: misnamed, broken, empty, odd encodings; name -> path."""
    png = noise_png(d / "real.png").read_bytes()
    wav = tone_wav(d / "real.wav").read_bytes()
    made = {
        "empty.png": b"",
        "empty.txt": b"",
        "text.jpg": NOTES.encode(),
        "notes.txt": NOTES.encode(),
        "README": b"# readme\n",
        "utf16.txt": NOTES.encode("utf-16"),
        "nul.txt": b"text\x00with a NUL\n",
        "binary.jpg": b"\x00\x9f" + bytes(range(256)) * 8,
        "truncated.png": png[: len(png) // 2],
        "png-named.mp3": png,
        "wav-named.png": wav,
        "pdf-named.png": text_pdf(d / "p.pdf", 1).read_bytes(),
        "drawing.svg": SVG.encode(),
        "page.html": f"<html>{SVG}</html>".encode(),
        "ünïcode näme.md": "ünïcode\n".encode(),
    }
    for name, data in made.items():
        (d / name).write_bytes(data)
    (d / "folder.png").mkdir()
    return {name: str(d / name) for name in [*made, "folder.png", "missing.png"]}


def _verdicts(path: str, tmp_path) -> dict[str, str]:
    """'ok' or the error each entry point gives a file passed without a declared kind."""
    out: dict[str, str] = {}
    try:
        Runner(engine=FakeEngine()).chat([user_message("What?", [file_part(path)])])
        out["runner"] = "ok"
    except InputError as e:
        out["runner"] = str(e)
    except Exception as e:  # noqa: BLE001 - any other failure is what this test is looking for
        out["runner"] = f"{type(e).__name__}: {e}"
    result, _ = invoke("ask", "What?", "-i", path)
    out["ask"] = "ok" if result.exit_code == 0 else result.stderr.removeprefix("mmchat: error: ").strip()
    result, _ = invoke("batch", "What?", path)
    record = json.loads(result.stdout.splitlines()[0]) if result.stdout else {}
    out["batch"] = "ok" if record.get("error") is None and record else (record.get("error") or {}).get("message", "?")
    code, seen = chat(tmp_path, f"/attach '{path}'", "/exit", runner=Runner(engine=FakeEngine()))
    errors = [line.split("error: ", 1)[1] for line in seen.splitlines() if "error: " in line]
    out["repl"] = "ok" if "attached " in seen and not errors else " ".join(errors) or seen
    return out


def test_every_awkward_file_gets_one_verdict_from_the_runner_ask_batch_and_the_repl(tmp_path):
    for name, path in _awkward(tmp_path).items():
        verdicts = _verdicts(path, tmp_path)
        assert "Traceback" not in str(verdicts) and "Error:" not in verdicts["runner"], (name, verdicts)
        oks = {k for k, v in verdicts.items() if v == "ok"}
        assert oks in (set(), set(verdicts)), (name, verdicts)  # all answer, or all refuse
        if not oks:  # and they say the same thing
            said = {": ".join(v.replace(path, "FILE").split(": ")[:2]) for v in verdicts.values()}  # advice may differ
            assert len(said) == 1, (name, verdicts)
