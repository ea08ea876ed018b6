"""Regenerate the binary test fixtures in this directory.

Run from anywhere: ``python tests/data/make_fixtures.py``. Needs fpdf2 (only for
this script: ``pip install fpdf2``) and python-docx (a dependency of qa). The
output is deterministic: fixed creation dates and zip timestamps, so regenerating
unchanged fixtures leaves git with nothing to commit. article.html is written by
hand, not generated.
"""

from __future__ import annotations

import zipfile
from datetime import datetime, timezone
from pathlib import Path

import docx
from fpdf import FPDF

HERE = Path(__file__).resolve().parent
FIXED_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

# The text of each page of two_pages.pdf; tests check the extracted pages against it.
PDF_PAGES = [
    ("Harbour report", "The harbour opens at dawn and closes at dusk. Fishing boats leave before sunrise."),
    ("Market report", "The market closes at noon on Saturdays. Fresh bread is sold until it runs out."),
]


def new_pdf() -> FPDF:
    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_producer("qa tests/data/make_fixtures.py")
    pdf.set_font("Helvetica", size=12)
    return pdf


def two_pages_pdf() -> None:
    """A PDF with a heading and a paragraph on each of two pages."""
    pdf = new_pdf()
    for heading, body in PDF_PAGES:
        pdf.add_page()
        pdf.cell(text=heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.multi_cell(0, 6, body)
    pdf.output(str(HERE / "two_pages.pdf"))


def encrypted_pdf() -> None:
    """A PDF that needs the password "secret" to open."""
    pdf = new_pdf()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.cell(text="A secret page.")
    pdf.output(str(HERE / "encrypted.pdf"))


def scanned_pdf() -> None:
    """A PDF with drawings but no text layer, like a scan."""
    pdf = new_pdf()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.line(20, 100, 180, 100)
    pdf.output(str(HERE / "scanned.pdf"))


def sample_docx() -> None:
    """A DOCX with a heading, paragraphs (one with a line break), an empty paragraph and a table."""
    document = docx.Document()
    document.core_properties.created = FIXED_DATE
    document.core_properties.modified = FIXED_DATE
    document.add_heading("Library opening hours", level=1)
    document.add_paragraph("The library opens at nine in the morning on weekdays.")
    paragraph = document.add_paragraph("Children's books are ")
    paragraph.add_run("on the first floor").bold = True
    paragraph.add_run(".")
    paragraph.add_run().add_break()
    paragraph.add_run("Ask at the desk for a reader's card.")
    document.add_paragraph("")
    table = document.add_table(rows=3, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Day", "Hours"
    table.cell(1, 0).text, table.cell(1, 1).text = "Saturday", "10 to 14"
    table.cell(2, 0).merge(table.cell(2, 1)).text = "Closed on Sundays"
    document.add_paragraph("Closing remarks: the café reopens in May.")
    path = HERE / "sample.docx"
    document.save(str(path))
    _fix_zip_times(path)


def _fix_zip_times(path: Path) -> None:
    """Rewrite a zip with fixed member timestamps, so that the bytes are reproducible."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, date_time=(2024, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(fixed, data)


def main() -> None:
    two_pages_pdf()
    encrypted_pdf()
    scanned_pdf()
    sample_docx()
    for name in ("two_pages.pdf", "encrypted.pdf", "scanned.pdf", "sample.docx"):
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
