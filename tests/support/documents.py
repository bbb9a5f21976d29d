"""PDFs written by the tests: fpdf2 writes a real text layer (what a word processor's export has),
Pillow writes image-only pages (what a scanner gives), PDFium writes a long blank one."""

from __future__ import annotations

from pathlib import Path


def text_pdf(path: Path, pages: int, *, password: str | None = None) -> Path:
    """`pages` A4 pages, page N saying "Page N says hello" in its text layer (and on the page)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=28)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(text=f"Page {n} says hello")
    if password:
        pdf.set_encryption(owner_password=password, user_password=password)
    path.write_bytes(bytes(pdf.output()))
    return path


def scanned_pdf(path: Path, pages: int = 2) -> Path:
    """Pages that are pictures only, no text layer, as a scanner writes them (Pillow's PDF writer)."""
    from PIL import Image

    images = [Image.new("RGB", (200, 280), (255 - 40 * n, 255, 255)) for n in range(pages)]
    images[0].save(path, "PDF", save_all=True, append_images=images[1:])
    return path


def empty_pdf(path: Path) -> Path:
    """A well-formed PDF whose page tree has no pages (ISO 32000-1, 7.7.3.2: /Count 0, /Kids [])."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(out)
    return path


def many_pages_pdf(path: Path, pages: int) -> Path:
    """A long PDF of blank pages, written fast."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for _ in range(pages):
        doc.new_page(100, 100).close()
    doc.save(str(path))
    doc.close()
    return path
