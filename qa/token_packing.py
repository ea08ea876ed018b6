"""Chunking by token offsets: one tokenization of a paragraph instead of one per prefix.

:func:`qa.documents.pack_sentences` decides every merge by counting the tokens of the
merged text, and :func:`qa.documents.split_long_span` every word it adds to a piece:
counts of ever longer prefixes, so a long paragraph without sentence ends was
quadratic (a 50 MB line was still chunking after 420 s), and even ordinary text was
tokenized several times over. An embedder that can say where its tokens are
(``token_offsets(text)``, see :data:`TokenOffsets`) lets the chunker tokenize each
paragraph group once, count the tokens of every word, and count any run of words by
a difference of prefix sums. The decisions are those of the functions above, made
in the same order: the passages are the same (``tests/test_token_packing.py``
compares them), in time linear in the text.

The counts are exact for tokenizers that tokenize words separately (the text is
split at spaces before it is tokenized, as e5's XLM-R tokenizer and SentencePiece
with ``split_by_whitespace`` do): a span's tokens are then its words' tokens plus the
prompt's. Cuts inside a word (a word longer than the budget) are still searched with
the counter itself. A tokenizer that does not split at spaces first (EmbeddingGemma's
SentencePiece BPE) has a few pieces that span a space (``>▁</``; ``▁▁`` where a
text's own "▁" meets a space): two words a token spans are *tied*, and a span that
starts or ends between them is counted by the counter, not here. Elsewhere a BPE
tokenization that no token crosses is the two sides' own (each merge is the best pair
on its side), so the counts stay exact. A document whose first passages are not
counted as the counter counts them is chunked the old way (:func:`agrees_with_counter`).
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_left, bisect_right
from typing import Callable, Iterator, Sequence

import numpy as np

Span = tuple[int, int]
TokenCounter = Callable[[str], int]
TokenOffsets = Callable[[str], Sequence[tuple[int, int]]]
"""``token_offsets(text)``: the ``(start, end)`` character offsets in ``text`` of the
tokens the model makes of it as a passage, prompt and special tokens left out, in
order (a list of pairs, or an ``(n, 2)`` integer array). An optional embedder method;
without it the chunker counts prefixes with ``count_tokens``."""

_WORD = re.compile(r"\S+")
BLOCK_CHARS = 1 << 18
"""Characters tokenized at a time (cut at white space): a 100 MB line is not one call."""


class SpanCounter:
    """Token counts of the runs of whole words of one stretch of text, from one tokenization.

    ``count(start, end)`` is what ``count_tokens(prefix + normalize_for_model(text[start:end]))``
    gives, for ``start`` at the start of a word and ``end`` at the end of one; None for
    other spans. Built from ``token_offsets`` of the text as the model sees it (words
    in NFC, one space between them), a block of about :data:`BLOCK_CHARS` at a time.
    """

    def __init__(self, text: str, start: int, end: int, token_offsets: TokenOffsets, overhead: int,
                 progress: Callable[[int], None] | None = None):
        starts, ends, counts, tied = [], [], [], []
        blocks = _blocks(text, start, end)
        for number, (block_start, block_end) in enumerate(blocks):
            block_starts, block_ends, block_counts, block_tied = _word_tokens(text, block_start, block_end,
                                                                              token_offsets)
            if len(block_tied) and number + 1 < len(blocks) and not _clean_cut(text, block_end):
                block_tied[-1] = True  # the next block was tokenized apart: no span starts or ends here unasked
            starts.append(block_starts)
            ends.append(block_ends)
            counts.append(block_counts)
            tied.append(block_tied)
            if progress:
                progress(block_end)
        tied_after = np.concatenate(tied) if tied else np.zeros(0, dtype=bool)  # words i and i+1 share a token
        # Where a span may end, and start, and be counted here: see count().
        sure_ends = [(block_counts > 0) & ~_ends_unsure(text, block_ends) for block_ends, block_counts in zip(ends, counts)]
        sure_end_all = (np.concatenate(sure_ends) if sure_ends else np.zeros(0, dtype=bool)) & ~tied_after
        sure_start_all = ~np.concatenate([[False], tied_after[:-1]]).astype(bool)
        # Machine integers searched with bisect: a tenth of the time of numpy's calls on scalars.
        # (4-byte offsets: qa reads files of at most 100 MiB; 1-byte flags)
        self.starts = _int_array(np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64), "i")
        self.ends = _int_array(np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64), "i")
        counts_all = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        self.sure_end = _int_array(sure_end_all, "b")
        self.sure_start = _int_array(sure_start_all, "b")
        self.unsure_ends = _int_array(np.concatenate([[0], np.cumsum(~sure_end_all, dtype=np.int64)]))
        self.sums = _int_array(np.concatenate([[0], np.cumsum(counts_all, dtype=np.int64)]))
        self.overhead = overhead

    def word_at(self, start: int) -> int | None:
        """The number of the word that starts at ``start``, or None."""
        i = bisect_left(self.starts, start)
        return i if i < len(self.starts) and self.starts[i] == start else None

    def word_ending(self, end: int) -> int | None:
        """The number of the word that ends at ``end``, or None."""
        j = bisect_left(self.ends, end)
        return j if j < len(self.ends) and self.ends[j] == end else None

    def words(self, first: int, last: int) -> int:
        """Tokens of words ``first`` to ``last`` (both included), prompt included."""
        return self.overhead + self.sums[last + 1] - self.sums[first]

    def count(self, start: int, end: int) -> int | None:
        """Tokens of ``text[start:end]`` when both ends are word boundaries, else None.

        None too when a token spans the space before the first word or after the last
        (they are tied to their neighbours), when the last word gave no token here, or
        ends in a control or format character (a zero-width space, a byte-order mark): a
        tokenizer's normalizer may erase it or make it a space, which at the end of a
        text is a token of its own and elsewhere melts into the space after it, so only
        the counter can tell.
        """
        first, last = self.word_at(start), self.word_ending(end)
        if first is None or last is None or last < first or not self.sure_end[last] or not self.sure_start[first]:
            return None
        return self.words(first, last)

    def ends_sure(self, first: int, last: int) -> bool:
        """Whether every word from ``first`` to ``last`` (both included) may end a span counted here."""
        return self.unsure_ends[last + 1] == self.unsure_ends[first]

    def last_fitting(self, first: int, last: int, max_tokens: int) -> int | None:
        """The largest ``j`` in ``[first, last]`` whose words ``first..j`` fit ``max_tokens``
        (word ``first`` alone must fit): the piece a word-by-word greedy would make.
        None when that piece would end on a word that gave no token (see :meth:`count`)."""
        bound = max_tokens - self.overhead + self.sums[first]
        j = max(first, min(bisect_right(self.sums, bound) - 2, last))
        return j if self.sure_end[j] else None


_CONTROLS = np.array([unicodedata.category(chr(c))[0] == "C" for c in range(0x10000)], dtype=bool)


def _ends_unsure(text: str, ends: np.ndarray) -> np.ndarray:
    """Which words (by their ends in ``text``) end in a control, format, private-use or
    unassigned character (Unicode category C*)."""
    last = np.fromiter((ord(text[e - 1]) for e in ends.tolist()), dtype=np.int64, count=len(ends))
    unsure = _CONTROLS[np.minimum(last, 0xFFFF)]
    for i in np.flatnonzero(last > 0xFFFF):
        unsure[i] = unicodedata.category(chr(int(last[i])))[0] == "C"
    return unsure


def _int_array(values: np.ndarray, code: str = "q") -> array:
    out = array(code)
    out.frombytes(np.ascontiguousarray(values, dtype=np.dtype(code)).tobytes())
    return out


def _blocks(text: str, start: int, end: int) -> list[Span]:
    """Cut ``text[start:end]`` into stretches of about :data:`BLOCK_CHARS`, at white space."""
    blocks = []
    while start < end:
        stop = min(end, start + BLOCK_CHARS)
        if stop < end:
            space = _last_space(text, start, stop)
            stop = space if space is not None else _next_space(text, stop, end)
        blocks.append((start, stop))
        start = stop
    return blocks


def _clean_cut(text: str, at: int) -> bool:
    """Whether the white space at ``at`` stands between a letter or digit and another."""
    return 0 < at and at + 1 < len(text) and text[at - 1].isalnum() and text[at + 1].isalnum()


def _last_space(text: str, start: int, stop: int) -> int | None:
    """The last white space before ``stop`` (within 4096 characters), one between a letter or
    digit and another if there is one: no token of a tokenizer spans such a space (see the
    module's docstring), so the blocks on either side tokenize as they would together."""
    fallback = None
    for i in range(stop - 1, max(start, stop - 4096) - 1, -1):
        if text[i].isspace() and i > start:
            if _clean_cut(text, i):
                return i
            if fallback is None:
                fallback = i
    return fallback


def _next_space(text: str, stop: int, end: int) -> int:
    match = re.compile(r"\s").search(text, stop, end)
    return match.start() if match else end


_SPACES = np.zeros(0x3001, dtype=bool)
_SPACES[[c for c in range(0x3001) if chr(c).isspace()]] = True  # every white space character is below U+3001


def _word_tokens(text: str, start: int, end: int,
                 token_offsets: TokenOffsets) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the starts and ends (in ``text``) of the words of ``text[start:end]``, the
    tokens of each, and whether a token spans the space after each (the last: False),
    from one call of ``token_offsets`` on the words as the model sees them (NFC, one
    space between them: what ``normalize_for_model`` makes of them)."""
    block = text[start:end]
    words = block.split()
    if not words:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0, dtype=bool)
    points = np.frombuffer(block.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    space = np.zeros(len(points) + 2, dtype=bool)
    space[0] = space[-1] = True
    space[1:-1] = (points < len(_SPACES)) & _SPACES[np.minimum(points, len(_SPACES) - 1)]
    edges = np.flatnonzero(space[1:] != space[:-1])  # word starts and ends, alternately
    starts, ends = edges[0::2] + start, edges[1::2] + start
    if not unicodedata.is_normalized("NFC", block):
        words = [unicodedata.normalize("NFC", w) for w in words]
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    word_ends = np.cumsum(lengths + 1) - 1  # in the words joined by single spaces
    offsets = np.asarray(token_offsets(" ".join(words)), dtype=np.int64).reshape(-1, 2)
    # A token belongs to the word its last character is in (a lone "▁" before a word, to that word).
    owners = np.searchsorted(word_ends, offsets[:, 1], side="left")
    counts = np.bincount(np.minimum(owners, len(words) - 1), minlength=len(words))
    # A token spans the space after word i when it starts before that space and ends after it.
    first_gap = np.searchsorted(word_ends, offsets[:, 0], side="right")
    after_gap = np.searchsorted(word_ends, offsets[:, 1], side="left")  # the first gap at or past its end
    crossing = first_gap < after_gap
    marks = np.zeros(len(words) + 1, dtype=np.int64)
    np.add.at(marks, first_gap[crossing], 1)
    np.add.at(marks, after_gap[crossing], -1)
    tied = np.cumsum(marks)[: len(words)] > 0
    tied[-1] = False
    return starts.astype(np.int64), ends.astype(np.int64), counts.astype(np.int64), tied


def prompt_overhead(count_tokens: TokenCounter, token_offsets: TokenOffsets, prefix: str) -> int:
    """Tokens a passage costs besides its words' own: the prompt, the title context
    (``prefix``) and special tokens, as ``count_tokens`` counts them."""
    sample = "a"
    return count_tokens(prefix + sample) - len(np.asarray(token_offsets(sample)).reshape(-1, 2))


def pack_counted(text: str, sentences: list[Span], counter: SpanCounter, model_tokens: TokenCounter,
                 max_tokens: int, split_characters: Callable[[str, Span, TokenCounter, int], list[Span]],
                 progress: Callable[[int], None] | None = None) -> list[Span]:
    """:func:`qa.documents.pack_sentences`, with word-aligned counts from ``counter``.

    ``model_tokens`` counts what the counter can't (spans that start inside a word,
    after a word was cut between characters by ``split_characters``). ``progress(position)``
    is told every :data:`BLOCK_CHARS` or so how far the sentences packed reach.
    """
    reported = sentences[0][0] if sentences else 0

    def count(start: int, end: int) -> int:
        counted = counter.count(start, end)
        return model_tokens(text[start:end]) if counted is None else counted

    def reporting(spans: list[Span]) -> Iterator[Span]:
        nonlocal reported
        for span in spans:
            if progress and span[1] - reported >= BLOCK_CHARS:
                progress(reported := span[1])
            yield span

    from qa.documents import pack_spans

    return pack_spans(reporting(sentences), count,
                      lambda span: _split_long(text, span, counter, model_tokens, max_tokens, split_characters),
                      max_tokens)


def _split_long(text: str, span: Span, counter: SpanCounter, model_tokens: TokenCounter, max_tokens: int,
                split_characters) -> list[Span]:
    """:func:`qa.documents.split_long_span` of a word-aligned ``span``: each piece is the
    longest run of words that fits, found by a search of the prefix sums, not word by word.
    A piece that starts at a word the counter can't start a span at, or whose search passes
    a word it can't end one at (tied to the next by a token, see :meth:`SpanCounter.count`),
    grows word by word by ``model_tokens``, as ``split_long_span`` does."""
    first, last = counter.word_at(span[0]), counter.word_ending(span[1])
    if first is None or last is None:
        from qa.documents import split_long_span

        return split_long_span(text, span, model_tokens, max_tokens)
    pieces: list[Span] = []
    k = first
    while k <= last:
        if counter.sure_start[k] and counter.sure_end[k] and counter.words(k, k) <= max_tokens:
            j = counter.last_fitting(k, last, max_tokens)
            # The search holds when every end it passes, and the first that doesn't fit, is counted here.
            if j is not None and counter.ends_sure(k, min(j + 1, last)):
                pieces.append((counter.starts[k], counter.ends[j]))
                k = j + 1
                continue
        k = _piece_by_words(text, counter, k, last, model_tokens, max_tokens, split_characters, pieces)
    return pieces


def _piece_by_words(text: str, counter: SpanCounter, k: int, last: int, model_tokens: TokenCounter,
                    max_tokens: int, split_characters, pieces: list[Span]) -> int:
    """Append the piece that starts at word ``k`` to ``pieces`` as split_long_span makes it,
    counting each longer prefix with ``model_tokens``; return the word after it."""
    start, end = counter.starts[k], counter.ends[k]
    if model_tokens(text[start:end]) > max_tokens:
        cut = split_characters(text, (start, end), model_tokens, max_tokens)
        pieces.extend(cut[:-1])
        start, end = cut[-1]
    k += 1
    while k <= last and model_tokens(text[start : counter.ends[k]]) <= max_tokens:
        end = counter.ends[k]
        k += 1
    pieces.append((start, end))
    return k


def agrees_with_counter(text: str, chunks: list[Span], counter_of: Callable[[Span], int | None],
                        model_tokens: TokenCounter, samples: int = 3) -> bool:
    """Whether the first ``samples`` chunks are counted by ``counter_of`` as ``model_tokens``
    counts them: a cheap check that the tokenizer does tokenize words separately."""
    for chunk in chunks[:samples]:
        counted = counter_of(chunk)
        if counted is not None and counted != model_tokens(text[chunk[0] : chunk[1]]):
            return False
    return True


def chunk_groups(text: str, groups: list[Span], model_tokens: TokenCounter, count_tokens: TokenCounter,
                 token_offsets: TokenOffsets, prefix: str, max_tokens: int,
                 progress: Callable[[int, int], None] | None = None) -> list[Span] | None:
    """Return the passage spans of every paragraph group, as :func:`qa.documents.chunk_document`
    cuts them, each group tokenized once with ``token_offsets``; None when the tokenizer
    doesn't count words separately (the caller then counts prefixes).

    ``model_tokens`` counts a piece as the chunker does (prompt, title context, the text
    normalized); ``count_tokens`` is the embedder's own. ``progress(done, total)``
    follows the characters chunked.
    """
    from qa.documents import _split_characters, split_sentences

    overhead = prompt_overhead(count_tokens, token_offsets, prefix)
    windows = _windows(groups)
    total = sum(window[-1][1] - window[0][0] for window in windows)
    spans: list[Span] = []
    checked = done = 0
    for window in windows:
        width = window[-1][1] - window[0][0]

        def tokenized(position: int, base: int = done, first: int = window[0][0]) -> None:
            # the bar's first half for a window is tokenizing it, the second cutting it
            if progress:
                progress(base + min(width, position - first) // 2, total)

        def packed(position: int, base: int = done, first: int = window[0][0]) -> None:
            if progress:
                progress(base + (width + min(width, position - first)) // 2, total)

        counter = SpanCounter(text, window[0][0], window[-1][1], token_offsets, overhead, tokenized)
        for start, end in window:
            chunks = pack_counted(text, split_sentences(text, start, end), counter, model_tokens, max_tokens,
                                  _split_characters, packed)
            if checked < 3:
                if not agrees_with_counter(text, chunks, lambda c: counter.count(*c), model_tokens, 3 - checked):
                    return None
                checked += min(3, len(chunks))
            spans.extend(chunks)
        done += width
        if progress:
            progress(done, total)
    return spans


WINDOW_CHARS = 1 << 20
"""Paragraph groups are counted together up to about this many characters: one
tokenizer call for many short paragraphs, and bounded memory for a long document."""


def _windows(groups: list[Span]) -> list[list[Span]]:
    """Consecutive paragraph groups, in runs spanning about :data:`WINDOW_CHARS` of text."""
    windows: list[list[Span]] = []
    for group in groups:
        if windows and group[1] - windows[-1][0][0] <= WINDOW_CHARS:
            windows[-1].append(group)
        else:
            windows.append([group])
    return windows
