"""PDFs and text files as parts: pages as images then their text, page choice, refusals."""

from __future__ import annotations

import json
import logging

import pytest

from mmchat.errors import InputError, MediaError, SourceError, UnsupportedMedia
from mmchat.messages import file_part, image_part, user_message
from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.documents import empty_pdf, many_pages_pdf, scanned_pdf, text_pdf
from tests.support.helpers import model_args, run_mmchat

FAKE_TOKENS = 4000  # the fake answers with what it was given, one word a token


def _ask(runner: Runner, url: str, **options) -> str:
    return runner.chat(
        [user_message("What does it say?", [image_part(url)])], max_tokens=FAKE_TOKENS, **options
    ).content


@pytest.fixture
def said(caplog):
    """The notices the library logs (on "mmchat.inputs"), as a Python user's logging would get them."""
    caplog.set_level(logging.INFO, logger="mmchat")
    logger = logging.getLogger("mmchat")
    propagate, logger.propagate = logger.propagate, True  # a CLI test in this process may have stopped them
    yield lambda: [r.getMessage() for r in caplog.records if r.name.startswith("mmchat.inputs")]
    logger.propagate = propagate


def test_each_page_is_its_image_then_its_text_in_order(tmp_path, said):
    runner = Runner(engine=FakeEngine())
    answer = _ask(runner, str(text_pdf(tmp_path / "doc.pdf", 3)))
    pieces = answer.split("[page ")[1:]
    assert [p.split(" of ")[0] for p in pieces] == ["1", "2", "3"]
    for n, piece in enumerate(pieces, 1):
        assert "[image " in piece and piece.index("[image ") < piece.index(f"Page {n} says hello")
    assert said() == []  # three pages: nothing left out


def test_pages_are_rendered_at_the_image_size_the_model_takes(tmp_path):
    runner = Runner(engine=FakeEngine(), image_max_side=300)
    answer = _ask(runner, str(text_pdf(tmp_path / "doc.pdf", 1)))
    width = int(answer.split("[image ")[1].split("x300 ")[0])  # its long side at 300 pixels
    assert width in (212, 213)  # A4 is 210 x 297 mm; PDFium rounds a page's pixel size up


@pytest.mark.parametrize("how", ["fragment", "option", "request"])
def test_chosen_pages_only(tmp_path, how):
    pdf = str(text_pdf(tmp_path / "doc.pdf", 6))
    if how == "fragment":
        answer = _ask(Runner(engine=FakeEngine()), pdf + "#page=2-3")
    elif how == "option":
        answer = _ask(Runner(engine=FakeEngine(), pdf_pages="2-3"), pdf)
    else:
        answer = _ask(Runner(engine=FakeEngine()), pdf, pdf_pages="2-3")
    assert "Page 2 says hello" in answer and "Page 3 says hello" in answer
    assert "Page 1 " not in answer and "Page 4 " not in answer


def test_a_long_pdf_gives_its_first_eight_pages_with_one_notice(tmp_path, said):
    runner = Runner(engine=FakeEngine())
    answer = _ask(runner, str(text_pdf(tmp_path / "long.pdf", 20)))
    assert "Page 8 says hello" in answer and "Page 9 " not in answer
    assert len(said()) == 1 and "20 pages" in said()[0] and "12 left out" in said()[0]


def test_a_model_that_cannot_see_gets_the_text_layer_with_a_notice(tmp_path, said):
    runner = Runner(engine=FakeEngine(vision=False, audio=False))
    answer = _ask(runner, str(text_pdf(tmp_path / "doc.pdf", 2)))
    assert "Page 1 says hello" in answer and "Page 2 says hello" in answer and "[image" not in answer
    assert any("cannot see" in s for s in said())


def test_text_files_become_a_text_part_with_their_name(tmp_path):
    # Issue 24: a text file is read as text only as a file part (-i, /attach, batch); before, an
    # image_url part holding text was read as text too, and now it is refused (the next test)
    notes = tmp_path / "notes.md"
    notes.write_text("# Plan\n\nShip the PDF reader. ünïcode\n", encoding="utf-8")
    for runner in (Runner(engine=FakeEngine()), Runner(engine=FakeEngine(vision=False, audio=False))):
        answer = runner.chat([user_message("What does it say?", [file_part(str(notes))])], max_tokens=FAKE_TOKENS)
        assert "[file notes.md]" in answer.content and "Ship the PDF reader. ünïcode" in answer.content


def test_a_text_file_given_as_an_image_is_refused_naming_it(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Plan\n", encoding="utf-8")
    fake = FakeEngine()
    with pytest.raises(InputError, match=r"notes\.md is given as an image but holds text"):
        _ask(Runner(engine=fake), str(notes))
    assert fake.calls == []


def test_a_text_file_and_a_pdf_attach_in_the_repl(tmp_path):
    from mmchat.chat.conversation import Conversation

    notes = tmp_path / "notes.txt"
    notes.write_text("hello there", encoding="utf-8")
    pdf = text_pdf(tmp_path / "doc.pdf", 4)
    conv = Conversation()
    runner = Runner(engine=FakeEngine())
    assert conv.attach(runner, str(notes)).kind == "image"  # travels as an image part, read as text
    attached = conv.attach(runner, f"{pdf}#page=4")
    assert attached.url == f"{pdf.resolve()}#page=4"
    answer = runner.chat(conv.to_model() + [conv.user_turn("and?")], max_tokens=FAKE_TOKENS).content
    assert "hello there" in answer and "Page 4 says hello" in answer and "Page 1 " not in answer


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda d: text_pdf(d / "locked.pdf", 1, password="s3cret"), MediaError, "encrypted PDF"),
        (lambda d: _write(d / "broken.pdf", text_pdf(d / "x.pdf", 2).read_bytes()[:300]), MediaError, "broken.pdf"),
        (lambda d: empty_pdf(d / "empty.pdf"), MediaError, "no pages"),
        (lambda d: _write(d / "zero.pdf", b""), SourceError, "is empty"),
        (lambda d: many_pages_pdf(d / "huge.pdf", 2000), InputError, "2000 pages"),
        (lambda d: f"{text_pdf(d / 'three.pdf', 3)}#page=9", InputError, "has 3 pages, so page 9 is not there"),
        (lambda d: f"{text_pdf(d / 'three.pdf', 3)}#page=3-2", InputError, "run backwards"),
    ],
)
def test_bad_pdfs_are_refused_in_one_line(tmp_path, make, error, words):
    with pytest.raises(error, match=words):
        _ask(Runner(engine=FakeEngine()), str(make(tmp_path)))


def test_a_huge_pdf_is_read_when_pages_are_chosen(tmp_path):
    answer = _ask(Runner(engine=FakeEngine()), f"{many_pages_pdf(tmp_path / 'huge.pdf', 2000)}#page=1999")
    assert "[page 1999 of huge.pdf] [image" in answer


def test_a_scanned_pdf_for_a_text_only_model_is_refused(tmp_path):
    runner = Runner(engine=FakeEngine(vision=False, audio=False))
    with pytest.raises(InputError, match="no text layer"):
        _ask(runner, str(scanned_pdf(tmp_path / "scan.pdf")))
    assert "[image" in _ask(Runner(engine=FakeEngine()), str(scanned_pdf(tmp_path / "scan.pdf")))


def test_binary_that_is_no_media_is_still_refused(tmp_path):
    junk = _write(tmp_path / "junk.bin", bytes(range(256)) * 4)
    with pytest.raises(UnsupportedMedia, match="takes text only"):
        _ask(Runner(engine=FakeEngine(vision=False, audio=False)), str(junk))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# -- on the generated models, as a user runs it ---------------------------------------------


def test_ask_reads_a_pdf_on_a_vision_model_and_a_text_model(models, tmp_path):
    pdf = str(text_pdf(tmp_path / "doc.pdf", 10))
    vision = model_args(models)
    out = run_mmchat("ask", *vision, "--json", "--pages", "2-3", "-i", pdf, "What is on these pages?")
    assert out.returncode == 0, out.stderr.decode()
    usage = json.loads(out.stdout)["usage"]["prompt_tokens_details"]
    assert usage["image_tokens"] > 0 and usage["encoded_media"] == 2  # two pages, two images
    again = run_mmchat("ask", *vision, "--json", "--pages", "2-3", "-i", pdf, "What is on these pages?")
    assert (
        json.loads(again.stdout)["usage"]["prompt_tokens_details"]["encoded_media"] == 0
    )  # a new process: the pages came from the cache
    text_only = run_mmchat("ask", *model_args(models, None), "-i", pdf, "Summarise")
    assert text_only.returncode == 0, text_only.stderr.decode()
    assert "it gets the text of" in text_only.stderr.decode() and "2 left out" in text_only.stderr.decode()


def test_ask_refuses_a_missing_page_in_one_line(models, tmp_path):
    pdf = text_pdf(tmp_path / "three.pdf", 3)
    out = run_mmchat(
        "ask",
        *model_args(models),
        "-i",
        f"{pdf}#page=9",
        "hi",
    )
    assert out.returncode == 2 and out.stdout == b""
    assert out.stderr.decode().strip().count("\n") == 0 and "page 9 is not there" in out.stderr.decode()


def test_a_logged_pdfs_chosen_pages_come_back_with_continue(tmp_path):
    """The log keeps `#page=` with the path, so --continue sends the pages the user chose."""
    from tests.support.helpers import invoke

    doc = text_pdf(tmp_path / "doc.pdf", 3)
    first, _ = invoke("ask", "What does it say?", "-i", f"{doc}#page=2", "-n", "4000")
    assert first.exit_code == 0, first.output
    again, fake = invoke("ask", "--continue", "And then?", "-n", "4000")
    assert again.exit_code == 0, again.output
    sent = " ".join(str(s) for turn in fake.calls[-1][0] for s in turn.segments)
    assert "[page 2 of doc.pdf]" in sent and "[page 1 of" not in sent and "[page 3 of" not in sent
