"""Documents to passages: chunking, on top of cleaning (:mod:`qa.cleaning`) and sentence
splitting (:mod:`qa.sentences`).

Everything here is a pure function over a document's text that works in character
offsets of that text, so that every passage can point back into its source:
``passage.text == document.text[passage.start:passage.end]`` always holds.
Cleaning never rewrites text; it only decides which spans are content.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from qa.cleaning import (
    Span,
    content_lines,
    content_paragraphs,
    find_title,
    is_debris,
    is_heading,
    is_number_line,
    paragraph_groups,
)
from qa.sentences import split_sentences

__all__ = [  # the text pipeline's names, importable from here (cleaning's and sentences' too)
    "CHUNKER_VERSION", "ChunkSettings", "Document", "DocumentError", "Passage", "Span", "TokenCounter",
    "chunk_document", "content_lines", "content_paragraphs", "find_title", "is_debris", "is_heading",
    "is_number_line", "longest_prefix", "normalize_for_model", "pack_sentences", "paragraph_groups",
    "pack_spans", "passage_model_text", "split_long_span", "split_sentences",
]

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
    return pack_spans(sentences, lambda start, end: count_tokens(text[start:end]),
                      lambda span: split_long_span(text, span, count_tokens, max_tokens), max_tokens)


def pack_spans(sentences: Iterable[Span], count: Callable[[int, int], int], split: Callable[[Span], list[Span]],
               max_tokens: int) -> list[Span]:
    """Group consecutive ``sentences`` into spans of at most ``max_tokens`` by ``count(start, end)``.

    The packing both chunkers share (:func:`pack_sentences`, and :mod:`qa.token_packing`'s
    count by token offsets): a sentence over budget is cut by ``split(span)`` first; each
    merge is decided by counting the merged span itself. Returns spans in order.
    """
    chunks: list[Span] = []
    current: Span | None = None
    for span in sentences:
        for piece in [span] if count(*span) <= max_tokens else split(span):
            if current is not None and count(current[0], piece[1]) <= max_tokens:
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
