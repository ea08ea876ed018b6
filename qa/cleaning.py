"""Which lines of a document are content: web-page debris, number lines, paragraphs, headings.

Pure functions over a document's text that return spans (character offsets) of it;
cleaning never rewrites text, it only decides which spans are content. The chunker
(:mod:`qa.documents`) cuts passages from the paragraphs found here.
"""

from __future__ import annotations

import re
from typing import Iterator

Span = tuple[int, int]

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


LINE_BREAK = re.compile(r"\r\n|\r|\n")
# "- ", "* ", "+ ", "• ", "1. ", "1) " at the start of a line.
LIST_ITEM = re.compile(r"[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S")


def _lines(text: str) -> Iterator[Span]:
    start = 0
    for match in LINE_BREAK.finditer(text):
        yield start, match.start()
        start = match.end()
    yield start, len(text)


def trim_span(text: str, start: int, end: int) -> Span:
    """Return ``(start, end)`` without the white space at either end."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


_FULL_STOPS = (".", "!", "?", "…")
CLOSERS = "\"'”’»)]"


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
                label = text[span[0] : span[1]].rstrip().rstrip(CLOSERS)[-1:] not in _FULL_STOPS
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
        s, e = trim_span(text, start, end)
        adjacent = previous_end is not None and LINE_BREAK.fullmatch(text, previous_end, start) is not None
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
    return LIST_ITEM.match(text, start) is None


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
