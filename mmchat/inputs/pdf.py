"""Documents as parts: a PDF's pages (each an image, then its text layer), a text file as text.

A PDF is read with pypdfium2 (PDFium, the renderer in Chrome): it opens a document without
rendering it, so a 2,000-page PDF is refused from its page count and only the chosen pages
are drawn, each at the size the image encoder takes (the long side at `image_max_side`), not
more. The pixels of a page are the same on every run, so the encoded-media cache finds the
page again in a new process. A model that cannot see gets the text layer only.
"""

from __future__ import annotations

import logging
from pathlib import PurePath

from .. import config
from ..errors import InputError, MediaError
from ..media import Image
from ..values import PAGES
from .sniff import decode_text

__all__ = ["pdf_segments", "select_pages", "text_segments"]

log = logging.getLogger("mmchat.inputs")

Segment = str | Image


def select_pages(spec: str | None, count: int, label: str) -> tuple[list[int], int]:
    """The 1-based pages to read, and how many of the document's pages that leaves out.

    No `spec`: the first DEFAULT_PDF_MAX_PAGES. "3", "2-5", "1,4-6": those, in the order given."""
    if spec is None:
        pages = list(range(1, min(count, config.DEFAULT_PDF_MAX_PAGES) + 1))
        return pages, count - len(pages)
    spec = spec.replace(" ", "")
    if not PAGES.fullmatch(spec):
        raise InputError(f"{label}: pages '{spec}' are not valid: give pages such as 3, 2-5 or 1,4-6")
    pages: list[int] = []
    for item in spec.split(","):
        first, _, last = item.partition("-")
        a, b = int(first), int(last or first)
        if a > b:
            raise InputError(f"{label}: pages {item} run backwards: write {b}-{a}")
        if b > count:
            raise InputError(
                f"{label} has {count} page{'s' if count != 1 else ''}, so page {b} is not there: "
                f"choose pages from 1 to {count}"
            )
        pages += [p for p in range(a, b + 1) if p not in pages]
    return pages, 0


def pdf_segments(data: bytes, label: str, *, pages: str | None, max_side: int | None, vision: bool) -> list[Segment]:
    """The chosen pages in order: "[page N]", the page drawn (when the model sees), its text layer.
    What is left out (pages, or the pictures for a model that cannot see) is said on the log."""
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise MediaError(f"{label} is an encrypted PDF: save a copy without a password and attach that") from None
        # PDFium opens no document without pages, and its error code for that is stale: say both
        raise MediaError(
            f"{label} is a broken PDF or one with no pages: check the file, or print it to a new PDF"
        ) from None
    try:
        count = len(doc)
        if count == 0:
            raise MediaError(f"{label} is a PDF with no pages: check the file")
        if count > config.DEFAULT_PDF_MAX_DOCUMENT_PAGES and pages is None:
            raise InputError(
                f"{label} has {count} pages, more than the {config.DEFAULT_PDF_MAX_DOCUMENT_PAGES} mmchat "
                f"reads whole: choose pages with --pages or {_short(label)}#page=A-B"
            )
        chosen, left_out = select_pages(pages, count, label)
        if left_out:
            log.info(
                f"{label} has {count} pages: reading the first {len(chosen)} ({left_out} left out); "
                "choose others with --pages or #page=A-B"
            )
        if not vision:
            log.info(f"the model cannot see images: it gets the text of {label} only")
        out: list[Segment] = []
        for n in chosen:
            page = doc[n - 1]
            try:
                text = _text_layer(page)
                out.append(f"[page {n} of {_name(label)}]")
                if vision:
                    out.append(_render(page, max_side, label, n))
                if text:
                    out.append(text)
            finally:
                page.close()
        if not vision and not any(isinstance(s, str) and not s.startswith("[page ") for s in out):
            raise InputError(
                f"{label} has no text layer (scanned pages?) and the model cannot see images: "
                "use a model that takes images, or run OCR on the PDF first"
            )
        return out
    except pdfium.PdfiumError as e:
        raise MediaError(f"{label}: a page could not be read ({e}): check the file, or print it to a new PDF") from None
    finally:
        doc.close()


def _render(page, max_side: int | None, label: str, n: int) -> Image:
    """The page drawn with its long side at `max_side` pixels (never above DEFAULT_PDF_MAX_DPI)."""
    import numpy as np

    width, height = page.get_size()  # points, 1/72 inch
    scale = config.DEFAULT_PDF_MAX_DPI / 72
    if max_side:
        scale = min(scale, max_side / max(width, height, 1))
    bitmap = page.render(scale=scale, rev_byteorder=True)  # RGB(x) in memory order
    try:
        rgb = np.array(bitmap.to_numpy()[:, :, :3], copy=True)  # the bitmap's memory is freed below
    finally:
        bitmap.close()
    return Image(pixels=rgb, source=f"{label} page {n}")


def _text_layer(page) -> str:
    textpage = page.get_textpage()
    try:
        return textpage.get_text_bounded().replace("\r\n", "\n").strip()
    finally:
        textpage.close()


def text_segments(data: bytes, label: str) -> list[Segment]:
    """A text file as one text part, headed with its name so the model can refer to it."""
    if len(data) > config.DEFAULT_TEXT_FILE_MAX_BYTES:
        raise InputError(
            f"{label} is {len(data) / 2**20:.1f} MiB of text, more than the "
            f"{config.DEFAULT_TEXT_FILE_MAX_BYTES // 2**20} MiB mmchat attaches: attach a part of it"
        )
    text = decode_text(data)
    if text is None:
        raise MediaError(f"{label} is not UTF-8 text: convert it (iconv -t UTF-8) or attach it as the media it is")
    return [f"[file {_name(label)}]\n{text.rstrip()}\n[end of {_name(label)}]"]


def _name(label: str) -> str:
    return PurePath(label.split("?", 1)[0].rstrip("/")).name or label


def _short(label: str) -> str:
    return label if len(label) <= 60 else "…" + label[-40:]
