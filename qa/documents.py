"""Documents to passages: loading, cleaning, sentence splitting and chunking.

Everything here is a pure function over a document's text that works in character
offsets of that text, so that every passage can point back into its source:
``passage.text == document.text[passage.start:passage.end]`` always holds.
Cleaning never rewrites text; it only decides which spans are content.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import unicodedata
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

Span = tuple[int, int]
TokenCounter = Callable[[str], int]

# Bump when splitting or chunking changes in a way that changes passages: indexes
# built by an older chunker are then detected as stale and rebuilt.
# 2: a heading (the title too) parted from the text only by blank lines starts the
# next paragraph; number lines under a label are kept; sentences end after citation
# markers and at the ends of list items and of lines ending a sentence; a list item
# is never a title.
CHUNKER_VERSION = 2
# Room a passage's own text keeps beside a title embedded as its context.
MIN_BODY_TOKENS = 32


class DocumentError(Exception):
    """A document can't be read as text; the message is one line for the user."""


@dataclass(frozen=True)
class Document:
    """A document's text and where it came from.

    ``source`` names the file (its resolved path by default); ``sha256`` is the hash
    of the file's raw bytes. ``text`` is the extracted text, and passage offsets are
    character offsets into it: for plain text files it is the decoded content
    unchanged (a byte-order mark removed), so offsets map to the file's lines; for
    HTML, PDF and DOCX it is extracted text with paragraphs separated by blank lines.
    ``kind`` is "text", "html", "pdf" or "docx". ``pages`` (PDF only) holds the
    offset where each page starts (``pages[0] == 0``), so the page of an offset is
    ``bisect.bisect_right(pages, offset)``. ``note`` tells how the file was read when
    that involved a guess, e.g. "decoded as Latin-1 (not valid UTF-8)". ``observed``
    is the file's ``(size, mtime_ns)`` as seen on the opened file just before the
    bytes hashed in ``sha256`` were read (None when not read from a file): what an
    index records, so that an edit made after the read is seen as a change.
    """

    source: str
    text: str
    sha256: str
    kind: str = "text"
    pages: tuple[int, ...] = ()
    note: str | None = None
    observed: tuple[int, int] | None = None


@dataclass(frozen=True)
class Passage:
    """A span of a document that is embedded and returned as an answer.

    ``title`` is the document's title, kept as context for the passage's embedding;
    its own text starts the first passage when only blank lines part it from the text
    (see :func:`chunk_document`). ``line`` (text files: the 1-based line where the
    passage starts) or ``page`` (PDF: its 1-based page) tells a person where to look.
    """

    text: str
    source: str
    start: int
    end: int
    title: str | None = None
    line: int | None = None
    page: int | None = None

    def to_dict(self) -> dict:
        """Return the passage as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut into passages; stored in the index manifest.

    ``max_tokens`` bounds each passage in model tokens, including the title context
    and the model's prompt, so the model never truncates a passage silently.
    """

    max_tokens: int = 160
    title_as_context: bool = False
    chunker_version: int = CHUNKER_VERSION

    def to_dict(self) -> dict:
        """Return the settings as a JSON-ready dict (compared to detect stale indexes)."""
        return asdict(self)


class NotARegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory, not a file to read."""


def open_regular(path: Path | str, follow_links: bool = True) -> BinaryIO:
    """Open a file for binary reading, only if it is a regular file; return the handle.

    The check is made on the opened descriptor (``fstat``), not on the path before
    opening it: a file replaced by a FIFO between the two would otherwise block the
    open (a FIFO's open waits for a writer) or the read forever. The open itself is
    non-blocking for that reason; reads of the regular file it returns block as usual.
    Raises :class:`NotARegularFile` (an ``OSError``) for anything else, and the
    ``OSError`` of the open (missing, permission denied, a link loop) as is. Without
    ``follow_links`` a symbolic link is not followed but refused (``ELOOP``): qa's own
    index files are never links.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    from qa.extract import MAX_FILE_BYTES, too_large  # not at the top: qa.extract imports this module

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
    from qa.extract import extract_text  # not at the top: qa.extract imports this module

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


# --- cleaning -------------------------------------------------------------------

_COUNTER_WORDS = (
    r"views?|reads?|shares?|comments?|likes?|kali\s+dibaca|dibaca|dilihat|"
    r"komentar|suka|dibagikan|x\s+dibaca"
)
_DEBRIS_PATTERNS = [
    # A view/share counter, alone or glued to a section name: "Internasional057 views".
    re.compile(rf"^[\w\s./|·-]{{0,40}}?\d[\d.,]*\s*(?:[kKmM]\s*)?({_COUNTER_WORDS})\W*$", re.I),
    re.compile(r"^\W*(baca\s+juga|read\s+more|lihat\s+juga|simak\s+juga)\b.*$", re.I),
    re.compile(
        r"^\W*(advertisement|iklan|scroll\s+to\s+(continue|resume)(\s+with\s+content)?|"
        r"share(\s+this)?|bagikan|tweet|copy\s+link|salin\s+tautan)\W*$",
        re.I,
    ),
]


def is_debris(line: str) -> bool:
    """Return True for a line that is web-page debris, not content, seen on its own.

    Catches view and share counters ("Internasional057 views"), "Baca juga" links,
    advertisement markers, and lines without a single letter. A line of digits
    without letters ("4711", "555-0101") is debris alone but content next to lines
    of text: :func:`is_number_line` and :func:`content_paragraphs` keep it there.
    """
    stripped = line.strip()
    if not stripped:
        return True
    if not any(ch.isalpha() for ch in stripped):
        return True
    return any(p.match(stripped) for p in _DEBRIS_PATTERNS)


def is_number_line(line: str) -> bool:
    """Return True for a line with digits and no letters: "4711", "+62 812 3456", "10:30".

    Such a line is a page number or a counter when it stands alone, and part of what
    is said ("Door code" / "4711") when it is written under or between lines of text.
    """
    stripped = line.strip()
    return any(ch.isdigit() for ch in stripped) and not any(ch.isalpha() for ch in stripped)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> Iterator[Span]:
    start = 0
    for match in _LINE_BREAK.finditer(text):
        yield start, match.start()
        start = match.end()
    yield start, len(text)


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


_FULL_STOPS = (".", "!", "?", "…")
_CLOSERS = "\"'”’»)]"


def content_lines(text: str) -> list[Span]:
    """Return the spans of the lines of ``text`` that are content, in order.

    A line is content unless it is debris (see :func:`is_debris`). A number line
    (see :func:`is_number_line`) is content when written under a label: the line
    above it in the same block (no blank line between) is text that doesn't end a
    sentence ("Door code" / "4711", "Phone:" / "+62 812"), or a number line kept so
    ("Revenue" / "1,234" / "5,678"). A number under a finished sentence, or alone, is
    a page number or a counter. Spans are whole lines, untrimmed.
    """
    lines = list(_lines(text))
    kept: list[Span] = []
    block: list[tuple[Span, str]] = []  # (line, "text" | "number" | "debris")

    def close_block() -> None:
        label = False  # whether the line above is a label a number line may stand under
        for span, kind in block:
            if kind == "text":
                kept.append(span)
                label = text[span[0] : span[1]].rstrip().rstrip(_CLOSERS)[-1:] not in _FULL_STOPS
            elif kind == "number" and label:
                kept.append(span)
            else:
                label = False
        block.clear()

    for start, end in lines:
        line = text[start:end]
        if not line.strip():
            close_block()
        elif not is_debris(line):
            block.append(((start, end), "text"))
        elif is_number_line(line):
            block.append(((start, end), "number"))
        else:
            block.append(((start, end), "debris"))
    close_block()
    return kept


def content_paragraphs(text: str) -> list[Span]:
    """Split a document into paragraphs of content, dropping debris lines.

    Paragraphs are separated by blank lines. Lines that are not content (see
    :func:`content_lines`) are dropped and also end a paragraph. Returns trimmed
    ``(start, end)`` spans.
    """
    paragraphs: list[Span] = []
    current: Span | None = None
    previous_end = None
    for start, end in content_lines(text):
        s, e = _trim(text, start, end)
        adjacent = previous_end is not None and _LINE_BREAK.fullmatch(text, previous_end, start) is not None
        if current and adjacent:
            current = (current[0], e)
        else:
            if current:
                paragraphs.append(current)
            current = (s, e)
        previous_end = end
    if current:
        paragraphs.append(current)
    return paragraphs


def is_heading(text: str, span: Span) -> bool:
    """Return True when the paragraph ``text[span]`` reads as a heading.

    A heading is short, on one line, doesn't end like a sentence and isn't a list
    item: an article's headline, a Markdown "## Wifi", a "Contacts" above a list.
    """
    start, end = span
    line = text[start:end]
    if "\n" in line or "\r" in line or len(line) > 200:
        return False
    if line.rstrip()[-1:] in ".!?;:,":
        return False
    return _LIST_ITEM.match(text, start) is None


def find_title(text: str, paragraphs: list[Span]) -> Span | None:
    """Return the span of the document's title, or None when it has none.

    Takes the document text and its :func:`content_paragraphs`. The title is a first
    paragraph that is a heading (see :func:`is_heading`), followed by more content.
    See :func:`chunk_document` for what becomes of it.
    """
    if len(paragraphs) < 2 or not is_heading(text, paragraphs[0]):
        return None
    return paragraphs[0]


def paragraph_groups(text: str, paragraphs: list[Span]) -> list[Span]:
    """Join each heading to the paragraph after it, returning the spans passages are cut from.

    Takes the document text and its content paragraphs. A heading (see
    :func:`is_heading`) parted from the next paragraph only by blank lines starts
    that paragraph, so "## Wifi" is shown with the text it names instead of being a
    passage of its own; a heading followed by debris, or by nothing, stays alone.
    Returns ``(start, end)`` spans covering the paragraphs, in order.
    """
    groups: list[Span] = []
    pending: int | None = None
    for i, (start, end) in enumerate(paragraphs):
        follows = i + 1 < len(paragraphs) and not text[end : paragraphs[i + 1][0]].strip()
        if follows and is_heading(text, (start, end)):
            pending = start if pending is None else pending
            continue
        groups.append((start if pending is None else pending, end))
        pending = None
    return groups


# --- sentences ------------------------------------------------------------------

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no",
    "nos", "vol", "fig", "inc", "ltd", "co", "corp", "gen", "col", "lt", "sgt", "rev",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "dll", "dsb", "dst", "jl", "jln", "rp", "hlm", "tel", "bpk", "sdr", "ir", "drs", "h",
    "hj", "kh", "s.h", "s.e", "m.si", "u.s", "u.k", "a.s",
}
_CLOSING = f"[{re.escape(_CLOSERS)}]"
# A citation or footnote marker closing a sentence: "[3]", "[a]", "[note 1]".
_CITATION = r"\[[^\[\]\r\n]{1,32}\]"
# The lookbehind makes a run of dots one match attempt, not one per dot (quadratic).
_SENTENCE_END = re.compile(rf"(?<![.!?…])[.!?…]+(?:{_CLOSING}|{_CITATION})*(?=\s|$)")
_NEXT_STARTS_SENTENCE = re.compile(r"\s+[\"'“‘«(\[]?[\w\d]")
_BEFORE_LINE_BREAK = re.compile(r"[^\S\r\n]*[\r\n]")
# "- ", "* ", "+ ", "• ", "1. ", "1) " at the start of a line.
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S")
_MAX_INDENT = 64


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Split ``text[start:end]`` into sentences and return their trimmed spans.

    Takes the text and the range to split (a paragraph or a passage). A sentence
    ends at ``.``, ``!``, ``?`` or ``…``, plus closing quotes, brackets and citation
    markers ("… in 1904.[4][5]"), followed by white space and a word that does not
    start in lower case, unless the word before the dot is a known abbreviation or
    a single initial ("J. Biden"). A line break ends a sentence when the line ends
    in such punctuation (whatever the next line starts with), when the next line is
    a list item ("- ", "* ", "+ ", "1. ", "1) "), or after a list item unless the
    next line is indented (the item goes on); other line breaks are white space, so
    hard-wrapped prose stays one sentence. Returns spans in order; every character
    of the range other than white space belongs to exactly one sentence.
    """
    end = len(text) if end is None else end
    stops = sorted(set(_punctuation_ends(text, start, end)) | set(_list_item_ends(text, start, end)))
    spans: list[Span] = []
    sentence_start = start
    for stop in stops:
        s, e = _trim(text, sentence_start, stop)
        if s < e:
            spans.append((s, e))
        sentence_start = stop
    s, e = _trim(text, sentence_start, end)
    if s < e:
        spans.append((s, e))
    return spans


def _punctuation_ends(text: str, start: int, end: int) -> Iterator[int]:
    """Yield the ends of the sentences that end in punctuation inside the range."""
    for match in _SENTENCE_END.finditer(text, start, end):
        stop, ending = match.end(), match.group()
        if stop == end:
            continue
        follower = _NEXT_STARTS_SENTENCE.match(text, stop, end)
        next_lower = follower is not None and text[follower.end() - 1].islower()
        word_start, word = _word_before(text, start, match.start())
        if ending == "." and len(word) <= 3 and word.isdigit() and _starts_line(text, word_start):
            continue  # the "1." of a numbered list item
        # A citation marker after the dot shows that it ends a sentence, not an abbreviation.
        abbreviation = ending[0] == "." and "[" not in ending and _is_abbreviation(word)
        if _BEFORE_LINE_BREAK.match(text, stop, end):
            # The end of a line ends the sentence whatever follows, unless an abbreviation
            # or an ellipsis goes on in lower case on the next line: "10 a.m.\nwaktu".
            ellipsis = ending[:2] == ".." or ending[0] == "…"
            if abbreviation or (next_lower and (ellipsis or "." in word)):
                continue
        elif follower is None or next_lower or abbreviation:
            continue
        yield stop


def _list_item_ends(text: str, start: int, end: int) -> Iterator[int]:
    """Yield the content end of each line in the range whose line break ends a sentence
    because of a list item (see :func:`split_sentences`)."""
    previous_end, previous_item = None, False
    line_start = start
    for line_break in [*_LINE_BREAK.finditer(text, start, end), None]:
        line_end = line_break.start() if line_break else end
        s, e = _trim(text, line_start, line_end)
        if s < e:
            at_line_start = line_start != start or _starts_line(text, start)
            item = at_line_start and _LIST_ITEM.match(text, line_start) is not None
            indented = text[line_start].isspace()  # a list item going on
            if previous_end is not None and (item or (previous_item and not indented)):
                yield previous_end
            previous_end, previous_item = e, item
        line_start = line_break.end() if line_break else end


def _starts_line(text: str, position: int) -> bool:
    """Whether only spaces and tabs stand between ``position`` and the start of its line."""
    lo = max(0, position - _MAX_INDENT)
    while position > lo and text[position - 1] in " \t":
        position -= 1
    return position == 0 or text[position - 1] in "\r\n"


def _word_before(text: str, sentence_start: int, dot: int) -> tuple[int, str]:
    word_start = dot
    while word_start > sentence_start and not text[word_start - 1].isspace():
        word_start -= 1
    return word_start, text[word_start:dot].lstrip("\"'“‘(«[").lower()


def _is_abbreviation(word: str) -> bool:
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        return True
    return word in _ABBREVIATIONS


# --- chunking -------------------------------------------------------------------


def split_long_span(text: str, span: Span, count_tokens: TokenCounter, max_tokens: int) -> list[Span]:
    """Cut one span that is over ``max_tokens`` into pieces that fit, at word boundaries.

    A single word longer than the budget (or text without spaces) is cut between
    characters. Returns trimmed spans that cover every non-space character.
    """
    start, end = span
    pieces: list[Span] = []
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[start:end])]
    words = [(start + s, start + e) for s, e in words]
    piece_start: int | None = None
    piece_end = start
    for ws, we in words:
        if piece_start is None:
            candidate_start = ws
        else:
            candidate_start = piece_start
        if count_tokens(text[candidate_start:we]) <= max_tokens:
            piece_start, piece_end = candidate_start, we
            continue
        if piece_start is not None:
            pieces.append((piece_start, piece_end))
        if count_tokens(text[ws:we]) <= max_tokens:
            piece_start, piece_end = ws, we
        else:
            cut = _split_characters(text, (ws, we), count_tokens, max_tokens)
            pieces.extend(cut[:-1])
            piece_start, piece_end = cut[-1]
    if piece_start is not None:
        pieces.append((piece_start, piece_end))
    return pieces


def longest_prefix(fits: Callable[[int], bool], start: int, end: int, guess: int, least: int) -> int:
    """Return the largest ``stop`` in ``[least, end]`` with ``fits(stop)`` (``least`` when none
    above it fits), for a ``fits`` that holds up to some stop and fails after it.

    Gallops from ``start + guess`` (doubling the step) to a stop that doesn't fit, then
    binary-searches below it: the cost is counts of about the answer's length, not of
    the whole rest of the text (which made long text without spaces quadratic). Both
    the chunker's cut of an over-long sentence and an embedder's cut of text to its
    window are this search.
    """
    lo, step = least, guess
    hi = min(end, start + step)
    while hi < end and fits(hi):
        lo, step = hi, step * 2
        hi = min(end, start + step)
    if hi == end and fits(end):
        return end
    hi -= 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split_characters(text: str, span: Span, count_tokens: TokenCounter, max_tokens: int) -> list[Span]:
    start, end = span
    pieces: list[Span] = []
    guess = 64
    while start < end:
        stop = longest_prefix(lambda at: count_tokens(text[start:at]) <= max_tokens, start, end, guess, start + 1)
        pieces.append((start, stop))
        guess = max(1, stop - start)
        start = stop
    return pieces


def pack_sentences(
    text: str, sentences: list[Span], count_tokens: TokenCounter, max_tokens: int
) -> list[Span]:
    """Group consecutive sentences into chunks of at most ``max_tokens`` tokens.

    Each merge is decided by counting the merged chunk itself, so counters that are
    not additive (subword tokenizers are not quite) never overshoot. Sentences stay
    whole unless one alone is over budget, in which case it is cut with
    :func:`split_long_span`. Returns ``(start, end)`` spans in document order.
    """
    chunks: list[Span] = []
    current: Span | None = None
    for span in sentences:
        fits = count_tokens(text[span[0] : span[1]]) <= max_tokens
        for piece in [span] if fits else split_long_span(text, span, count_tokens, max_tokens):
            if current is not None and count_tokens(text[current[0] : piece[1]]) <= max_tokens:
                current = (current[0], piece[1])
                continue
            if current is not None:
                chunks.append(current)
            current = piece
    if current is not None:
        chunks.append(current)
    return chunks


def normalize_for_model(text: str) -> str:
    """Return text as the model should see it: NFC, white space collapsed.

    The model's tokenizer expects NFC input, and line breaks inside a passage carry
    no meaning for it.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def passage_model_text(passage: Passage, settings: ChunkSettings) -> str:
    """Return the text embedded for a passage: its title as context, then its text.

    Takes the passage and the chunk settings (the title is context only when
    ``settings.title_as_context`` is on). The passage the title heads (the title,
    then a line break) gets no second copy; one that merely starts with the same
    words does.
    """
    body = normalize_for_model(passage.text)
    title = passage.title
    if settings.title_as_context and title and not passage.text.startswith((f"{title}\n", f"{title}\r")):
        return f"{normalize_for_model(passage.title)}. {body}"
    return body


def chunk_document(document: Document, count_tokens: TokenCounter, settings: ChunkSettings,
                   token_offsets: Callable[[str], object] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[Passage]:
    """Cut a document into passages bounded in model tokens.

    Takes the document, a function counting model tokens of a text (including the
    model's prompt and special tokens, so the budget is what the model sees), and the
    chunk settings. Debris is dropped, sentences stay whole, and passages never cross
    paragraphs, except that a heading starts the paragraph after it (see
    :func:`paragraph_groups`): "The wifi password is hunter2" or "## Wifi" is shown
    with the text it heads, not lost or returned alone. The title (see
    :func:`find_title`) is also carried by every passage; a title parted from the
    text by debris (a web page's "1.234 views") is that context only, since a passage
    is one span and must not hold debris. Returns passages in document order.

    With the embedder's ``token_offsets`` (see :mod:`qa.token_packing`), each paragraph
    is tokenized once and cut by its tokens' offsets, in time linear in the text, into
    the same passages; ``progress(done, total)`` then follows the characters chunked.
    """
    text = document.text
    paragraphs = content_paragraphs(text)
    title_span = find_title(text, paragraphs)
    title = text[title_span[0] : title_span[1]] if title_span else None
    if title_span and text[title_span[1] : paragraphs[1][0]].strip():
        paragraphs = paragraphs[1:]
    prefix = f"{normalize_for_model(title)}. " if settings.title_as_context and title else ""
    if prefix and count_tokens(prefix) > settings.max_tokens - MIN_BODY_TOKENS:
        prefix, title = "", None  # a title this long can't be context: it would crowd the text out

    def model_tokens(piece: str) -> int:
        return count_tokens(prefix + normalize_for_model(piece))

    passages: list[Passage] = []
    groups = paragraph_groups(text, paragraphs)
    spans = None
    if token_offsets is not None:
        from qa.token_packing import chunk_groups

        spans = chunk_groups(text, groups, model_tokens, count_tokens, token_offsets, prefix, settings.max_tokens,
                             progress)
    if spans is None:
        spans = [span for g_start, g_end in groups
                 for span in pack_sentences(text, split_sentences(text, g_start, g_end), model_tokens,
                                            settings.max_tokens)]
    for start, end in spans:
        passages.append(Passage(text[start:end], document.source, start, end, title))
    if not passages and title_span:
        start, end = title_span
        passages.append(Passage(text[start:end], document.source, start, end, None))
    return passages
