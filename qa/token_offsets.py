"""Where a Hugging Face ``tokenizers`` tokenizer puts its tokens: an embedder's ``token_offsets``.

The chunker (:mod:`qa.token_packing`) tokenizes each paragraph once and needs the
character span of every token (:data:`qa.token_packing.TokenOffsets`). A tokenizer
that splits text into words at spaces before tokenizing them (a ``Metaspace`` or
whitespace pre-tokenizer, as e5's XLM-R tokenizer has) tokenizes a word the same
wherever it stands, so each distinct word is tokenized once and remembered: ordinary
text repeats its words, and the chunker then runs at several MB/s where tokenizing
everything runs at about 1. Any other tokenizer, or text that is not words parted by
single spaces, is tokenized whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CACHE_WORDS = 500_000
"""Distinct words remembered at most; past it the memory is emptied and refilled."""


def token_offsets_for(tokenizer: Any) -> "TokenizerOffsets":
    """Return a ``token_offsets`` function for a ``tokenizers.Tokenizer`` (or a transformers
    fast tokenizer, whose ``backend_tokenizer`` is one): see :class:`TokenizerOffsets`."""
    return TokenizerOffsets(getattr(tokenizer, "backend_tokenizer", tokenizer))


class TokenizerOffsets:
    """``token_offsets(text)``: the ``(n, 2)`` array of the character spans of ``text``'s
    tokens, special tokens left out.

    Uses the tokenizer as it is when it neither truncates nor pads, else a copy that
    doesn't (a transformers tokenizer leaves its last call's truncation set on the
    shared one), made on first use: copying e5's tokenizer takes seconds.
    """

    def __init__(self, tokenizer: Any):
        self._given = tokenizer
        self._own: Any = None
        self.by_word = tokenizer is not None and _splits_words(tokenizer)
        self._rows: dict[str, int] = {}
        self._counts = np.zeros(0, dtype=np.int64)
        self._firsts = np.zeros(0, dtype=np.int64)
        self._starts = np.zeros(0, dtype=np.int64)
        self._ends = np.zeros(0, dtype=np.int64)

    @property
    def _tokenizer(self) -> Any:
        if self._own is None:
            if self._given.truncation is None and self._given.padding is None:
                self._own = self._given
            else:
                from tokenizers import Tokenizer

                self._own = Tokenizer.from_str(self._given.to_str())
                self._own.no_truncation()
                self._own.no_padding()
        return self._own

    def __call__(self, text: str) -> np.ndarray:
        words = text.split(" ")
        if not self.by_word or text.split() != words:  # not words parted by single spaces
            return self._whole(text)
        return self._by_words(words)

    def _whole(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)

    def _by_words(self, words: list[str]) -> np.ndarray:
        if len(self._rows) > CACHE_WORDS:
            self._forget()
        new = set(words).difference(self._rows)
        if new:
            self._learn(sorted(new))
        get = self._rows.__getitem__
        rows = np.fromiter(map(get, words), dtype=np.int64, count=len(words))
        counts = self._counts[rows]
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        positions = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        total = int(counts.sum())
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        flat = np.repeat(self._firsts[rows], counts) + within
        base = np.repeat(positions, counts)
        return np.stack([base + self._starts[flat], base + self._ends[flat]], axis=1)

    def _forget(self) -> None:
        self._rows = {}
        self._counts = self._firsts = self._starts = self._ends = np.zeros(0, dtype=np.int64)

    def _learn(self, words: list[str]) -> None:
        """Tokenize and remember ``words``. A word the normalizer erases, or turns into a
        space at an edge (a zero-width or direction mark), that starts with a combining
        mark (normalized otherwise at the start of a text than after a space), or that
        holds a special token's text ("<mask>"), is tokenized between two others, as in
        running text."""
        import unicodedata

        normalizer = self._tokenizer.normalizer
        specials = [token.content for token in self._tokenizer.get_added_tokens_decoder().values() if token.content]
        wrapped = []
        for word in words:
            seen = normalizer.normalize_str(word) if normalizer is not None else word
            alone = seen and seen == seen.strip() and unicodedata.category(word[0])[0] != "M" \
                and not any(special in word for special in specials)  # "<mask>" in a text: cut out before the rest
            wrapped.append(word if alone else f"a {word} a")
        encodings = self._tokenizer.encode_batch(wrapped, add_special_tokens=False)
        offsets = []
        for word, text, encoding in zip(words, wrapped, encodings):
            spans = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            if text is not word:  # the word's tokens (by where they end: a "▁" for the space before it too)
                inside = (spans[:, 1] > 1) & (spans[:, 1] <= 2 + len(word))
                spans = np.clip(spans[inside] - 2, 0, len(word))
            offsets.append(spans)
        self._remember(words, offsets)

    def _remember(self, words: list[str], offsets: list[np.ndarray]) -> None:
        """Keep each word's token spans (``(k, 2)``, in the word)."""
        counts = np.fromiter(map(len, offsets), dtype=np.int64, count=len(offsets))
        firsts = len(self._starts) + np.concatenate([[0], np.cumsum(counts)[:-1]])
        joined = np.concatenate(offsets) if offsets else np.zeros((0, 2), dtype=np.int64)
        for row, word in enumerate(words, start=len(self._rows)):
            self._rows[word] = row
        self._counts = np.concatenate([self._counts, counts])
        self._firsts = np.concatenate([self._firsts, firsts])
        self._starts = np.concatenate([self._starts, joined[:, 0]])
        self._ends = np.concatenate([self._ends, joined[:, 1]])


def _splits_words(tokenizer: Any) -> bool:
    """Whether the tokenizer cuts text into words at spaces before tokenizing it, so that a
    word's tokens never depend on its neighbours (and may be remembered)."""
    import json

    pre_tokenizer = tokenizer.pre_tokenizer
    if pre_tokenizer is None:
        return False
    pre = json.loads(pre_tokenizer.__getstate__())
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for step in steps:
        kind = step.get("type")
        if kind == "Metaspace" and step.get("split", True):
            return True
        if kind in ("WhitespaceSplit", "Whitespace"):
            return True
    return False
