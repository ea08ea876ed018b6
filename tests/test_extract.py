import hashlib
import io
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qa.documents import DocumentError
from qa.extract import document_from_bytes, read_document
from qa.extract import (
    MAX_FILE_BYTES,
    SUPPORTED_SUFFIXES,
    TEXT_SUFFIXES,
    decode_text,
    extract_text,
    looks_binary,
)

DATA = Path(__file__).parent / "data"
# What tests/data/make_fixtures.py writes on the two pages of two_pages.pdf.
PDF_PAGES = [
    "Harbour report\nThe harbour opens at dawn and closes at dusk. Fishing boats leave before sunrise.",
    "Market report\nThe market closes at noon on Saturdays. Fresh bread is sold until it runs out.",
]


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def error_of(data: bytes, suffix: str, name: str = "doc") -> str:
    with pytest.raises(DocumentError) as caught:
        extract_text(data, suffix, name)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{name}: ")
    return message


def test_suffix_sets():
    assert TEXT_SUFFIXES == {".txt", ".text", ".md", ".markdown"}
    assert SUPPORTED_SUFFIXES == TEXT_SUFFIXES | {".html", ".htm", ".pdf", ".docx"}
    assert MAX_FILE_BYTES == 100 * 1024 * 1024


# --- plain text -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".md", ".TXT", ".markdown", ".text", ".log", ""])
def test_plain_text_is_kept_unchanged(suffix):
    raw = "# Title\r\n\r\nLine one\n\tindented  twice\r\n\n\nend"
    extracted = extract_text(raw.encode(), suffix, "notes")
    assert (extracted.text, extracted.kind, extracted.pages, extracted.note) == (raw, "text", (), None)


def test_utf8_byte_order_mark_is_the_only_thing_dropped():
    assert extract_text("\ufeffHello\r\n".encode(), ".txt", "n").text == "Hello\r\n"


def test_latin1_text_is_decoded_with_a_note():
    extracted = extract_text("Caf\xe9 cr\xe8me, na\xefve\n".encode("latin-1"), ".txt", "menu.txt")
    assert extracted.text == "Café crème, naïve\n"
    assert extracted.note == "decoded as Latin-1 (not valid UTF-8)"


def test_windows_1252_punctuation_is_decoded_with_a_note():
    extracted = extract_text("\u201cQuoted\u201d \u2013 \u20ac5\n".encode("cp1252"), ".md", "q.md")
    assert extracted.text == "\u201cQuoted\u201d \u2013 \u20ac5\n"
    assert extracted.note == "decoded as Windows-1252 (not valid UTF-8)"


def test_bytes_undefined_in_windows_1252_fall_back_to_latin1():
    assert decode_text(b"caf\xe9 \x81", "x") == ("café \x81", "decoded as Latin-1 (not valid UTF-8)")


def test_utf16_with_byte_order_mark_is_text():
    data = "\ufeffZeile eins\r\nÄrger".encode("utf-16-le")
    extracted = extract_text(data, ".txt", "ps.txt")
    assert extracted.text == "Zeile eins\r\nÄrger"
    assert extracted.note == "decoded as UTF-16"
    assert not looks_binary(data)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"text then a NUL \x00 far in", bytes(range(1, 32)) * 20],
)
def test_binary_content_is_refused(data):
    assert looks_binary(data)
    assert "looks like a binary file" in error_of(data, ".txt", "bin.txt")


def test_text_with_a_few_control_characters_is_not_binary():
    colored_log = b"\x1b[31mERROR\x1b[0m disk full\n" * 50 + b"\x07bell\x08\n"
    assert not looks_binary(colored_log)
    assert extract_text(colored_log, ".txt", "log").text == colored_log.decode()


@pytest.mark.parametrize(
    ("data", "reason"), [(b"", "no text (empty file)"), (b" \r\n\t\n ", "no text (only white space)")]
)
@pytest.mark.parametrize("suffix", [".txt", ".html", ".pdf", ".docx"])
def test_empty_and_blank_documents_have_no_text(data, reason, suffix):
    message = error_of(data, suffix, "e")
    if suffix == ".txt" or not data:
        assert message == f"e: {reason}"


# --- HTML -------------------------------------------------------------------------


def test_html_article_text_without_menus_scripts_ads_or_footer():
    extracted = extract_text(fixture("article.html"), ".html", "article.html")
    text = extracted.text
    assert extracted.kind == "html" and extracted.pages == () and extracted.note is None
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == "Old tram depot to become a public library"
    assert paragraphs[1] == (
        "The city council voted on Tuesday to turn the old tram depot into a public library, "
        "ending a decade of debate over the site."
    )
    assert "A long road to the vote" in paragraphs
    assert "A reading room for children\nA repair workshop for bicycles\nA café run by volunteers" in paragraphs
    assert paragraphs[-1].startswith("The tram depot was built in 1912")
    for debris in ["Home", "Weather", "dataLayer", "font-family", "cookies", "Advertisement", "newsletter",
                   "Bus fares", "Great article", "waste of taxpayers", "one euro a week", "Copyright",
                   "Privacy policy", "addEventListener"]:
        assert debris not in text


def test_html_paragraphs_are_separated_by_blank_lines_and_lines_are_tidy():
    page = (b"<html><head><title>Notes</title></head><body><article><h1>Notes</h1>"
            b"<p>First   paragraph\n  wraps in the source.</p><p>Line one<br>line two</p>"
            b"<table><tr><th>Day</th><th>Hours</th></tr><tr><td>Monday</td><td>9 to 5</td></tr></table>"
            b"</article></body></html>")
    text = extract_text(page, ".htm", "n.htm").text
    assert text.split("\n\n") == [
        "Notes", "First paragraph wraps in the source.", "Line one\nline two", "Day | Hours\nMonday | 9 to 5"]


@pytest.mark.parametrize(
    ("head", "header", "title"),
    [('<meta property="og:title" content="Harbour to reopen">', "<h1>Harbour News</h1>", "Harbour to reopen"),
     ("<title>Port News</title>", "<h1 class='site'>Harbour to reopen</h1>", "Harbour to reopen"),
     ("<title>Harbour to reopen - Port News</title>", "", "Harbour to reopen - Port News")],
)
def test_html_headline_outside_the_article_becomes_the_first_paragraph(head, header, title):
    page = (f"<html><head>{head}</head><body><header>{header}</header><div class='post'><p>The harbour "
            "will reopen in June after two years of repairs, the port authority said on Monday.</p>"
            "<p>Ferries to the islands will run twice a day.</p></div></body></html>")
    paragraphs = extract_text(page.encode(), ".html", "h.html").text.split("\n\n")
    assert paragraphs[0] == title
    assert paragraphs[1].startswith("The harbour will reopen in June") and len(paragraphs) == 3


def test_nested_html_blocks_are_lines_not_run_together():
    page = (b"<html><body><article><p>Shopping list for the week, with enough words to be content.</p>"
            b"<ul><li>Fruit<ul><li>Apple</li><li>Pear</li></ul></li><li>Bread</li></ul>"
            b"<blockquote><p>First quoted paragraph.</p><p>Second quoted paragraph.</p></blockquote>"
            b"</article></body></html>")
    assert extract_text(page, ".html", "n.html").text.split("\n\n")[1:] == [
        "Fruit\nApple\nPear\nBread", "First quoted paragraph.\nSecond quoted paragraph."]


def test_html_fragment_without_html_tag_is_read():
    assert extract_text(b"<p>Just one short sentence.</p>", ".html", "f.html").text == "Just one short sentence."


def test_html_declared_latin1_is_decoded():
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 cr\xe8me au lait.</p></body></html>'
    assert "Café crème au lait." in extract_text(page.encode("latin-1"), ".html", "l.html").text


@pytest.mark.parametrize(
    "page",
    [b"<html><head><script>var a = 1;</script><style>p {}</style></head>"
     b"<body><script>go()</script></body></html>",
     b"<html><body></body></html>"],
)
def test_html_without_readable_text_is_refused(page):
    assert error_of(page, ".html", "x.html") == "x.html: no readable text found in the HTML"


def test_binary_html_is_refused():
    assert "binary" in error_of(b"\x00\x01\x02<html>", ".html", "x.html")


# --- PDF --------------------------------------------------------------------------


def test_pdf_pages_are_joined_by_a_blank_line_with_their_offsets():
    extracted = extract_text(fixture("two_pages.pdf"), ".pdf", "two_pages.pdf")
    assert extracted.kind == "pdf" and extracted.note is None
    assert extracted.text == "\n\n".join(PDF_PAGES)
    assert extracted.pages == (0, len(PDF_PAGES[0]) + 2)
    for start, end, page in zip(extracted.pages, [*extracted.pages[1:], None], PDF_PAGES):
        assert extracted.text[start:end].strip() == page


def test_pdf_text_keeps_line_feeds_only_and_joins_hyphenated_words():
    from qa.extract import _tidy_pdf_text

    # PDFium ends lines with CR LF and marks a word hyphenated at a line end with \x02.
    raw = "  Distinguished Encoding manip\x02ulation.\r\nCopyright \rc 2001\x0c\x00\ufffe\tend\r\n"
    assert _tidy_pdf_text(raw) == "Distinguished Encoding manipulation.\nCopyright \nc 2001\tend"


def test_encrypted_pdf_is_refused():
    assert error_of(fixture("encrypted.pdf"), ".pdf", "e.pdf") == "e.pdf: PDF is encrypted (needs a password)"


def test_pdf_without_text_layer_is_refused():
    assert error_of(fixture("scanned.pdf"), ".pdf", "s.pdf") == "s.pdf: has no text layer (a scanned PDF?)"


@pytest.mark.parametrize("data", [fixture("two_pages.pdf")[:600], b"%PDF-1.7 nothing else", b"plain words"])
def test_broken_pdf_is_refused(data):
    assert "broken or unreadable PDF" in error_of(data, ".pdf", "b.pdf")


# --- DOCX -------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_document_order():
    extracted = extract_text(fixture("sample.docx"), ".docx", "sample.docx")
    assert extracted.kind == "docx" and extracted.pages == () and extracted.note is None
    assert extracted.text.split("\n\n") == [
        "Library opening hours",
        "The library opens at nine in the morning on weekdays.",
        "Children's books are on the first floor.\nAsk at the desk for a reader's card.",
        "Day | Hours\nSaturday | 10 to 14\nClosed on Sundays",
        "Closing remarks: the café reopens in May.",
    ]


def test_docx_without_text_is_refused():
    import docx

    buffer = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("   ")
    document.save(buffer)
    assert error_of(buffer.getvalue(), ".docx", "d.docx") == "d.docx: no text in the document"


def zip_bytes(**members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04 not really a zip", fixture("sample.docx")[:4000], zip_bytes(readme="a zip, not a docx"),
     b"an old .doc renamed, or plain words"],
)
def test_broken_docx_is_refused(data):
    assert "broken or unreadable .docx" in error_of(data, ".docx", "b.docx")


# --- read_document / document_from_bytes ------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("two_pages.pdf", "pdf"), ("sample.docx", "docx"), ("article.html", "html")],
)
def test_read_document_picks_the_extractor_by_suffix(name, kind):
    document = read_document(DATA / name)
    assert document.kind == kind
    assert document.source == str((DATA / name).resolve())
    assert document.sha256 == hashlib.sha256(fixture(name)).hexdigest()
    assert document.text == extract_text(fixture(name), Path(name).suffix, name).text
    assert document.pages == (extract_text(fixture(name), ".pdf", "p").pages if kind == "pdf" else ())


def test_read_document_keeps_the_note_and_names_the_file_in_errors(tmp_path):
    (tmp_path / "old.txt").write_bytes("Gr\xfc\xdfe".encode("latin-1"))
    document = read_document(tmp_path / "old.txt")
    assert (document.text, document.kind, document.note) == ("Grüße", "text", "decoded as Latin-1 (not valid UTF-8)")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    with pytest.raises(DocumentError, match=rf"^{tmp_path / 'broken.pdf'}: broken or unreadable PDF"):
        read_document(tmp_path / "broken.pdf")


def test_read_document_refuses_huge_files_by_size_before_reading(tmp_path, monkeypatch):
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES)  # sparse: takes no disk space
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("a huge file was opened"))
    with pytest.raises(DocumentError, match=r"huge.txt: 100 MB or larger$"):
        read_document(huge)


def test_read_document_of_a_file_that_disappeared(tmp_path):
    with pytest.raises(DocumentError, match=r"gone.txt: disappeared while indexing \(no such file\)"):
        read_document(tmp_path / "gone.txt")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_read_document_does_not_block_on_a_named_pipe(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(DocumentError, match="not a regular file"):
        read_document(tmp_path / "pipe.txt")


def test_document_from_bytes_takes_the_suffix_from_the_source_or_the_argument():
    html = b"<html><body><p>Body text of the page.</p></body></html>"
    assert document_from_bytes(html, "page.html").kind == "html"
    as_text = document_from_bytes(html, "page.html", suffix=".txt")
    assert (as_text.kind, as_text.text) == ("text", html.decode())
    assert document_from_bytes(b"abc", "no-suffix").kind == "text"


def test_heavy_libraries_are_imported_only_when_needed():
    code = ("import sys, qa.extract, qa.discover, qa.documents\n"
            "heavy = {'trafilatura', 'pypdfium2', 'docx', 'lxml'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- titles from metadata ------------------------------------------------------------


def pdf_with_info(page_text: str, title: str) -> bytes:
    """A one-page PDF whose text is ``page_text`` and whose document information has ``title``."""
    stream = f"BT /F1 12 Tf 72 720 Td ({page_text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({title}) >>".encode(),
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_pdf_title_in_its_metadata_heads_its_text():
    extracted = extract_text(pdf_with_info("The harbour opens at dawn.", "Harbour Rules 2024"), ".pdf", "scan01.pdf")
    assert extracted.text == "Harbour Rules 2024\n\nThe harbour opens at dawn."
    assert extracted.pages == (0,)


@pytest.mark.parametrize("title", ["", "scan01", "Microsoft Word - draft.doc", "The harbour opens"])
def test_a_pdf_title_that_says_nothing_new_is_passed_over(title):
    extracted = extract_text(pdf_with_info("The harbour opens at dawn.", title), ".pdf", "scan01.pdf")
    assert extracted.text == "The harbour opens at dawn."


def test_a_docx_title_in_its_properties_heads_its_text():
    import io

    import docx

    document = docx.Document()
    document.core_properties.title = "Library Handbook"
    document.add_paragraph("The library opens at nine.")
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract_text(buffer.getvalue(), ".docx", "x.docx").text == "Library Handbook\n\nThe library opens at nine."


def test_the_pdf_pages_move_with_a_title_put_first(monkeypatch):
    from qa import extract

    data = fixture("two_pages.pdf")
    plain = extract_text(data, ".pdf", "two_pages.pdf")
    monkeypatch.setattr(extract, "_metadata_heading", lambda title, text, name: "Port Authority\n\n")
    titled = extract_text(data, ".pdf", "two_pages.pdf")
    shift = len("Port Authority\n\n")
    assert titled.pages == (0, plain.pages[1] + shift)
    assert titled.text[titled.pages[1]:] == plain.text[plain.pages[1]:]


def docx_with_document_xml(size: int) -> bytes:
    """A real .docx whose word/document.xml is padded with ``size`` bytes of blanks."""
    import docx

    document = docx.Document()
    document.add_paragraph("A paragraph of text.")
    buffer = io.BytesIO()
    document.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for part in source.infolist():
            content = source.read(part)
            if part.filename == "word/document.xml":
                content = content.replace(b"<w:body>", b"<w:body>" + b" " * size, 1)
            archive.writestr(part.filename, content)
    return out.getvalue()


@pytest.mark.parametrize("size, reason", [(300 * 1024 * 1024, "unzips to more than 256 MB"),
                                          (20 * 1024 * 1024, "times its size")])
@pytest.mark.slow  # a 300 MB zip bomb: seconds
def test_docx_zip_bomb_is_refused_before_unzipping(size, reason):
    bomb = docx_with_document_xml(size)
    assert len(bomb) < 1024 * 1024  # a small file
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    message = error_of(bomb, ".docx", "bomb.docx")
    assert reason in message and "zip bomb" in message
    # parsing 20 MB of XML alone would take more than 100 MB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 * 1024


def test_docx_with_a_large_but_ordinary_part_is_read():
    extracted = extract_text(docx_with_document_xml(2 * 1024 * 1024), ".docx", "big.docx")
    assert extracted.text == "A paragraph of text."


def test_html_nested_past_the_parser_depth_is_read_not_called_empty():
    depth = 100_000
    page = ("<html><body>" + "<div>" * depth + "<p>Drones came from Iran in the spring.</p>"
            + "</div>" * depth + "</body></html>").encode()
    extracted = extract_text(page, ".html", "deep.html")
    assert extracted.text == "Drones came from Iran in the spring."
    assert "nested 100,003 elements deep" in extracted.note
