"""Document files to text: reading them safely, then plain text, Markdown, HTML, PDF, DOCX.

:func:`read_document` is where a document file is opened and read (never a FIFO,
never more than ``MAX_FILE_BYTES``); the chunker in ``qa.documents`` only sees text.

Each format has one extractor that turns a file's bytes into text for the chunker:
paragraphs separated by a blank line, so that passages never run across them.
Plain text is kept exactly as decoded, so offsets map back to the file's lines.
The extraction libraries are imported inside the functions that use them: the CLI
starts without paying for them, and only the formats present cost anything.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import io
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable

from qa.documents import Document, DocumentError
from qa.files import NotARegularFile, open_regular
from qa.html_text import LXML_MAX_DEPTH, flat_html_text, html_article

MAX_FILE_BYTES = 100 * 1024 * 1024
TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}

# How much of a file is looked at to tell text from binary (as git and file(1) do).
SNIFF_BYTES = 8192
# C0 control characters that text files don't contain. Not among them: tab, line
# breaks, form feed, backspace (man pages) and escape (colored logs).
_CONTROL_BYTES = bytes([*range(0x00, 0x08), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# PDFium marks a word hyphenated across a line end with \x02; other C0 characters
# (except tab and line feed) are debris of the text layer.
_PDF_DEBRIS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")


@dataclass(frozen=True)
class Extracted:
    """Text extracted from a file, with what the index needs to know about it.

    ``kind`` is "text", "html", "pdf" or "docx". ``pages`` (PDF only) holds the
    offset in ``text`` where each page starts. ``note`` tells the user about a
    guess made while reading, such as the encoding of a text file that isn't UTF-8.
    """

    text: str
    kind: str
    pages: tuple[int, ...] = ()
    note: str | None = None


def extract_text(data: bytes, suffix: str, name: str) -> Extracted:
    """Extract the text of a file from its raw bytes.

    Takes the bytes, the file's suffix (".pdf"; any case; unknown suffixes are read
    as plain text) and the name to use in error messages. Returns the text ready for
    chunking. Raises :class:`DocumentError` with a one-line reason when the file is
    binary, broken, encrypted, or has no text.
    """
    if not data:
        raise DocumentError(f"{name}: no text (empty file)")
    suffix = suffix.lower()
    extractor = _EXTRACTORS.get(suffix, _extract_plain)
    extracted = extractor(data, name)
    if not extracted.text or extracted.text.isspace():  # not .strip(): no copy of a huge text
        raise DocumentError(f"{name}: no text (only white space)")
    return extracted


def read_document(path: Path, source: str | None = None) -> Document:
    """Read a document file (text, Markdown, HTML, PDF or DOCX) into a :class:`Document`.

    Takes the path to read and, optionally, the name to record as its source
    (default: the resolved path). The extractor is chosen by the file's suffix; an
    unknown suffix is read as plain text. Files of ``MAX_FILE_BYTES`` or more are
    refused by their size, before they are read. Raises :class:`DocumentError` with
    a one-line reason naming the file when it is missing (it disappeared), not a
    regular file (checked on the opened file: a FIFO never blocks), too large,
    unreadable, binary, broken or without text.
    """
    try:
        if path.is_dir():
            raise DocumentError(f"{path}: is a directory, not a document")
        with open_regular(path) as handle:
            data, observed = _read_observed(handle, path, MAX_FILE_BYTES, too_large)
    except NotARegularFile:
        raise DocumentError(f"{path}: not a regular file") from None
    except FileNotFoundError:
        raise DocumentError(f"{path}: disappeared while indexing (no such file)") from None
    except IsADirectoryError:
        raise DocumentError(f"{path}: is a directory, not a document") from None
    except PermissionError:
        raise DocumentError(f"{path}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DocumentError(f"{path}: symbolic link loop") from None
        raise DocumentError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if reason := too_large(len(data)):  # it grew after the size check
        raise DocumentError(f"{path}: {reason}")
    document = document_from_bytes(data, source or os.path.realpath(path), display=str(path), suffix=path.suffix)
    return replace(document, observed=observed)


READ_ATTEMPTS = 3
"""Reads of a file that keeps changing while it is read, before its last read is kept."""


def _read_observed(handle: BinaryIO, path: Path, limit: int, too_large: Callable[[int], str | None]
                   ) -> tuple[bytes, tuple[int, int]]:
    """Read an open file whole; return its bytes and its ``(size, mtime_ns)`` from before the read.

    A file whose size, modification or change time moved during the read was written
    meanwhile (the bytes may mix two versions): it is read again, up to
    :data:`READ_ATTEMPTS` times. Whatever is kept is paired with the stat taken before
    its own read, never after, so that an edit during or after the read leaves the
    file's time unlike the recorded one (see :class:`Document`). Raises
    :class:`DocumentError` when the file is too large (``too_large`` gives the reason).
    """
    for _attempt in range(READ_ATTEMPTS):
        before = os.fstat(handle.fileno())
        if reason := too_large(before.st_size):
            raise DocumentError(f"{path}: {reason}")
        handle.seek(0)
        data = handle.read(limit)
        after = os.fstat(handle.fileno())
        if (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (after.st_size, after.st_mtime_ns, after.st_ctime_ns):
            break
    return data, (before.st_size, before.st_mtime_ns)


def document_from_bytes(
    data: bytes, source: str, display: str | None = None, suffix: str | None = None
) -> Document:
    """Extract a :class:`Document` from a file's raw bytes.

    ``display`` names the file in error messages (default: ``source``); ``suffix``
    picks the format (default: the suffix of ``source``; unknown suffixes, or none,
    are read as plain text). Raises :class:`DocumentError` when the bytes hold no
    text of that format (see :func:`qa.extract.extract_text`).
    """
    suffix = Path(source).suffix if suffix is None else suffix
    extracted = extract_text(data, suffix, display or source)
    return Document(
        source=source,
        text=extracted.text,
        sha256=hashlib.sha256(data).hexdigest(),
        kind=extracted.kind,
        pages=extracted.pages,
        note=extracted.note,
    )


def too_large(size: int) -> str | None:
    """Return why a file of ``size`` bytes is refused ("100 MB or larger"), or None.

    Files of :data:`MAX_FILE_BYTES` or more are never read: their text would not fit
    the index in reasonable time, and reading them costs as much memory. The reason
    leaves the size out: it is recorded to tell a file skipped again from a new one,
    and a growing log file must not look new (and rewrite the index) on every run.
    """
    if size < MAX_FILE_BYTES:
        return None
    return f"{MAX_FILE_BYTES // (1024 * 1024)} MB or larger"


def looks_binary(data: bytes) -> bool:
    """Return True when bytes are not text: a NUL byte, or many control characters.

    Text encoded as UTF-16 with a byte-order mark counts as text despite its NULs.
    Control characters are counted in the first :data:`SNIFF_BYTES` only; more than
    one in 20 means binary.
    """
    if data.startswith(_UTF16_BOMS):
        return False
    if b"\x00" in data:
        return True
    sample = data[:SNIFF_BYTES]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls * 20 > len(sample)


def decode_text(data: bytes, name: str) -> tuple[str, str | None]:
    """Decode the bytes of a text file; return the text and a note on the encoding.

    UTF-8 (a byte-order mark is dropped) needs no note. UTF-16 is read when the
    file starts with its byte-order mark. Anything else is decoded as Windows-1252,
    or as Latin-1 where Windows-1252 leaves a byte undefined: both always succeed,
    so a legacy Western file is indexed, with a note saying how it was read.
    Raises :class:`DocumentError` for binary content.
    """
    if data.startswith(_UTF16_BOMS):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise DocumentError(f"{name}: looks like a binary file, not text") from None
        if "\x00" in text:
            raise DocumentError(f"{name}: looks like a binary file, not text")
        return text, "decoded as UTF-16"
    if looks_binary(data):
        raise DocumentError(f"{name}: looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    # Latin-1 and Windows-1252 decode bytes under 0x80 and from 0xA0 alike.
    label = "Windows-1252" if re.search(rb"[\x80-\x9f]", data) else "Latin-1"
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        label, text = "Latin-1", data.decode("latin-1")
    return text, f"decoded as {label} (not valid UTF-8)"


def _extract_plain(data: bytes, name: str) -> Extracted:
    text, note = decode_text(data, name)
    return Extracted(text, "text", note=note)


def _extract_html(data: bytes, name: str) -> Extracted:
    if looks_binary(data):
        raise DocumentError(f"{name}: looks like a binary file, not HTML")
    try:
        title, blocks = html_article(data)
    except Exception as exc:  # noqa: BLE001 - a parser failing on hostile input must not end the run
        raise DocumentError(f"{name}: cannot read the HTML ({_one_line(exc)})") from None
    if not blocks:
        depth, blocks = flat_html_text(decode_text(data, "")[0])
        if depth <= LXML_MAX_DEPTH or not blocks:
            raise DocumentError(f"{name}: no readable text found in the HTML")
        return Extracted("\n\n".join(blocks), "html",
                         note=f"nested {depth:,} elements deep, past what the HTML parser reads: its text read as is")
    if title and title not in blocks:
        blocks.insert(0, title)
    return Extracted("\n\n".join(blocks), "html")


def _extract_pdf(data: bytes, name: str) -> Extracted:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError(f"{name}: PDF is encrypted (needs a password)") from None
        raise DocumentError(f"{name}: broken or unreadable PDF ({_pdfium_reason(exc)})") from None
    try:
        metadata = pdf.get_metadata_dict(skip_empty=True)
        page_texts = [_pdf_page_text(pdf, index) for index in range(len(pdf))]
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"{name}: broken or unreadable PDF ({_pdfium_reason(exc)})") from None
    finally:
        pdf.close()
    if not any(page_texts):
        raise DocumentError(f"{name}: has no text layer (a scanned PDF?)")
    text = "\n\n".join(page_texts)
    starts, offset = [], 0
    for page_text in page_texts:
        starts.append(offset)
        offset += len(page_text) + 2
    heading = _metadata_heading(metadata.get("Title"), text, name)
    if heading:  # on the first page, before its text
        text = heading + text
        starts = [0, *(start + len(heading) for start in starts[1:])]
    return Extracted(text, "pdf", pages=tuple(starts))


def _metadata_heading(title: str | None, text: str, name: str) -> str:
    """Return a document's metadata title as a first paragraph to put before ``text``, or "".

    A PDF or DOCX file whose text doesn't begin with its title (a title page drawn
    as an image, a cover without text) still has one in its metadata; put first, it
    becomes the document's title, shown beside every answer from it. Titles that say
    nothing are passed over: empty, the file's own name, or a word processor's
    "Microsoft Word - draft.doc".
    """
    title = " ".join((title or "").split())
    stem = Path(name).stem
    if (
        not title
        or len(title) > 200
        or title.lower() in {"untitled", "title", "document", stem.lower(), Path(name).name.lower()}
        or re.match(r"(?i)^microsoft (word|powerpoint|excel) - ", title)
        or text.lstrip().startswith(title)
    ):
        return ""
    return f"{title}\n\n"


def _pdf_page_text(pdf: Any, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    return _tidy_pdf_text(text)


def _tidy_pdf_text(text: str) -> str:
    """Return PDFium's text of a page with line feeds only and no control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _PDF_DEBRIS.sub("", text).strip()


def _pdfium_reason(exc: Exception) -> str:
    # "Failed to load document (PDFium: Data format error)." -> "Data format error"
    match = re.search(r"PDFium: ([^)]+)", str(exc))
    return match.group(1) if match else _one_line(exc)


# A .docx is a zip of XML parts. Its declared sizes are checked before anything is
# unzipped: a 2 MB file that unzips to gigabytes took 4.3 GB of memory to parse.
# The zip reader never unzips more than a part's declared size, so the check holds.
# Real documents' XML unzips 3-20 times; the bounds leave a wide margin.
MAX_DOCX_UNZIPPED = 256 * 1024 * 1024
MAX_DOCX_RATIO = 200
DOCX_RATIO_FROM = 8 * 1024 * 1024  # small parts may compress as well as they like


def docx_bomb_reason(data: bytes) -> str | None:
    """Return why a .docx's zip would unzip to too much (a zip bomb), or None.

    Takes the file's bytes; reads only the zip's central directory. Refuses a total
    declared size over :data:`MAX_DOCX_UNZIPPED`, and a part of
    :data:`DOCX_RATIO_FROM` bytes or more that unzips over :data:`MAX_DOCX_RATIO`
    times its compressed size. A zip that can't be listed is left to the reader,
    which says it is broken.
    """
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except Exception:  # noqa: BLE001 - a broken zip: the .docx reader reports it
        return None
    total = 0
    for part in parts:
        total += part.file_size
        if total > MAX_DOCX_UNZIPPED:
            return (f"unzips to more than {MAX_DOCX_UNZIPPED // (1024 * 1024)} MB "
                    "(a zip bomb?); not read")
        if part.file_size >= DOCX_RATIO_FROM and part.file_size > MAX_DOCX_RATIO * max(part.compress_size, 1):
            return (f"a part unzips {part.file_size // max(part.compress_size, 1):,} times its size "
                    "(a zip bomb?); not read")
    return None


def _extract_docx(data: bytes, name: str) -> Extracted:
    import docx
    from docx.table import Table

    if reason := docx_bomb_reason(data):
        raise DocumentError(f"{name}: {reason}")
    try:
        document = docx.Document(io.BytesIO(data))
        title = document.core_properties.title
        blocks = []
        for block in document.iter_inner_content():
            text = _table_text(block) if isinstance(block, Table) else block.text.strip()
            if text:
                blocks.append(text)
    except Exception as exc:  # noqa: BLE001 - zip, XML and package errors of a broken file
        raise DocumentError(f"{name}: broken or unreadable .docx ({_one_line(exc)})") from None
    if not blocks:
        raise DocumentError(f"{name}: no text in the document")
    text = "\n\n".join(blocks)
    return Extracted(_metadata_heading(title, text, name) + text, "docx")


def _table_text(table: Any) -> str:
    """Return a table as one line per row, its cells separated by " | "."""
    rows = []
    for row in table.rows:
        cells, texts, column = row.cells, [], 0
        while column < len(cells):
            texts.append(" ".join(cells[column].text.split()))
            column += cells[column].grid_span  # a merged cell is listed once per column it spans
        if any(texts):
            rows.append(" | ".join(text for text in texts if text))
    return "\n".join(rows)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


_EXTRACTORS: dict[str, Callable[[bytes, str], Extracted]] = {
    **{suffix: _extract_plain for suffix in TEXT_SUFFIXES},
    **{suffix: _extract_html for suffix in HTML_SUFFIXES},
    ".pdf": _extract_pdf,
    ".docx": _extract_docx,
}
