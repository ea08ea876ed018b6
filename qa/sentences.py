"""Sentence splitting: where a sentence ends in a paragraph, in character offsets.

Abbreviations, initials and dates don't end a sentence; citation markers stay with
theirs; list items and lines ending in a full stop end one. Pure functions, like
the rest of the text pipeline (:mod:`qa.cleaning`, :mod:`qa.documents`).
"""

from __future__ import annotations

import re
from typing import Iterator

from qa.cleaning import CLOSERS, LINE_BREAK, LIST_ITEM, Span, trim_span

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no",
    "nos", "vol", "fig", "inc", "ltd", "co", "corp", "gen", "col", "lt", "sgt", "rev",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "dll", "dsb", "dst", "jl", "jln", "rp", "hlm", "tel", "bpk", "sdr", "ir", "drs", "h",
    "hj", "kh", "s.h", "s.e", "m.si", "u.s", "u.k", "a.s",
}
_CLOSING = f"[{re.escape(CLOSERS)}]"
# A citation or footnote marker closing a sentence: "[3]", "[a]", "[note 1]".
_CITATION = r"\[[^\[\]\r\n]{1,32}\]"
# The lookbehind makes a run of dots one match attempt, not one per dot (quadratic).
_SENTENCE_END = re.compile(rf"(?<![.!?…])[.!?…]+(?:{_CLOSING}|{_CITATION})*(?=\s|$)")
_NEXT_STARTS_SENTENCE = re.compile(r"\s+[\"'“‘«(\[]?[\w\d]")
_BEFORELINE_BREAK = re.compile(r"[^\S\r\n]*[\r\n]")
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
        s, e = trim_span(text, sentence_start, stop)
        if s < e:
            spans.append((s, e))
        sentence_start = stop
    s, e = trim_span(text, sentence_start, end)
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
        if _BEFORELINE_BREAK.match(text, stop, end):
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
    for line_break in [*LINE_BREAK.finditer(text, start, end), None]:
        line_end = line_break.start() if line_break else end
        s, e = trim_span(text, line_start, line_end)
        if s < e:
            at_line_start = line_start != start or _starts_line(text, start)
            item = at_line_start and LIST_ITEM.match(text, line_start) is not None
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
