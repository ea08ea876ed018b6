"""A lexical signal: BM25 over stemmed words, without stopwords.

Dense vectors match meaning across languages but blur rare names and numbers;
BM25 matches them exactly when the question shares words with the text. Indonesian
words are stemmed with Sastrawi, so "membeli" and "pembelian" meet at "beli".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

_WORD = re.compile(r"\w+(?:[-']\w+)*", re.UNICODE)
_LATIN_ACCENTS = re.compile(r"(?<=[a-z])[\u0300-\u036f]+")
K1 = 1.2
B = 0.75

# Words that carry no content in a question or a passage: function words and
# question words of English and Indonesian. Sastrawi's own list (made for topic
# classification) also drops words a factoid answer turns on ("masalah", "dua",
# "pertama", "bulan", "jumlah"); BM25's IDF already discounts words that are merely
# frequent, so those are kept. Checked on the valid splits with bench/tune.py.
STOPWORDS = frozenset("""
the a an of in on at to for and or is are was were be been by with from as that this it its
did do does what which who whom whose when where why how will would
yang dan di ke dari ini itu dengan untuk pada adalah dalam tidak akan juga oleh atau sebagai
ada telah karena bahwa para tersebut saat bisa dapat sudah lebih hanya antara kepada sejak
hingga setelah namun tetapi serta secara merupakan sebuah seorang ia dia mereka kami kita saya
anda nya lah kah pun apa apakah siapa siapakah kapan kapankah dimana mana manakah bagaimana
bagaimanakah berapa berapakah mengapa kenapa
""".split())
# Bumped whenever ``terms`` changes, so that indexes built with the old rules get
# their BM25 statistics counted again (no re-embedding needed).
TERMS_VERSION = 3


@lru_cache(maxsize=1)
def _stemmer():
    from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

    return StemmerFactory().create_stemmer()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    # Sastrawi knows Indonesian, which is written in ASCII letters; it deletes any other
    # letter ("irán" would become "ir n").
    if not (word.isascii() and word.isalpha()) or len(word) <= 3:
        return word
    return _stemmer().stem(word) or word


def _unreduplicate(word: str) -> str:
    """Return the base of an Indonesian reduplicated plural: "drone-drone" -> "drone"."""
    head, sep, tail = word.partition("-")
    return head if sep and head == tail else word


def _fold(text: str) -> str:
    """Return ``text`` lower-cased, with the accents of Latin letters dropped, so "Irán"
    meets "Iran" and an NFD "café" meets an NFC one. Marks on other scripts (Japanese
    voicing marks, Devanagari vowels) are part of the letter and stay."""
    text = text.lower()
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _LATIN_ACCENTS.sub("", unicodedata.normalize("NFD", text)))


def terms(text: str) -> list[str]:
    """Return the BM25 terms of ``text``: lower-cased words without accents, stemmed,
    stopwords dropped."""
    out = []
    for match in _WORD.finditer(_fold(text)):
        word = _unreduplicate(match.group())
        if word in STOPWORDS:
            continue
        out.append(_stem(word))
    return out


@dataclass
class Lexicon:
    """BM25 statistics of a corpus: vocabulary, document frequencies, term counts.

    ``postings`` is a CSR-like layout: the term ids and counts of passage ``i`` are
    ``term_ids[offsets[i]:offsets[i+1]]`` and ``counts[...]``.
    """

    vocabulary: dict[str, int]
    document_frequency: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    term_ids: np.ndarray
    counts: np.ndarray
    _term_major: tuple | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, texts: Sequence[str]) -> "Lexicon":
        """Count the terms of every text."""
        vocabulary: dict[str, int] = {}
        offsets = [0]
        ids: list[int] = []
        counts: list[int] = []
        lengths = []
        for text in texts:
            bag: dict[int, int] = {}
            words = terms(text)
            for word in words:
                index = vocabulary.setdefault(word, len(vocabulary))
                bag[index] = bag.get(index, 0) + 1
            ids.extend(bag)
            counts.extend(bag.values())
            offsets.append(len(ids))
            lengths.append(len(words))
        term_ids = np.asarray(ids, dtype=np.int32)
        df = np.bincount(term_ids, minlength=len(vocabulary)).astype(np.int32)
        return cls(vocabulary, df, np.asarray(lengths, np.int32), np.asarray(offsets, np.int64),
                   term_ids, np.asarray(counts, np.int32))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the lexicon as plain arrays (for ``np.savez``; no pickles)."""
        words = sorted(self.vocabulary, key=self.vocabulary.get)
        return {
            "words": np.asarray(words, dtype=str) if words else np.zeros(0, dtype="<U1"),
            "document_frequency": self.document_frequency,
            "lengths": self.lengths,
            "offsets": self.offsets,
            "term_ids": self.term_ids,
            "counts": self.counts,
        }

    @classmethod
    def from_arrays(cls, arrays) -> "Lexicon":
        """Rebuild a lexicon saved with :meth:`to_arrays`."""
        words = [str(w) for w in arrays["words"]]
        return cls({w: i for i, w in enumerate(words)}, arrays["document_frequency"], arrays["lengths"],
                   arrays["offsets"], arrays["term_ids"], arrays["counts"])

    def coverage(self, query_terms: Sequence[str]) -> float:
        """Return the share of the query's terms that occur anywhere in the corpus.

        An English question over Indonesian text shares few terms with it, and BM25
        then says nothing useful; this is how much to trust it.
        """
        if not query_terms:
            return 0.0
        return sum(t in self.vocabulary for t in query_terms) / len(query_terms)

    def _postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Term-major view of the counts: passages and counts of each term, built once."""
        if self._term_major is None:
            rows = np.repeat(np.arange(len(self.lengths)), np.diff(self.offsets))
            order = np.argsort(self.term_ids, kind="stable")
            starts = np.concatenate([[0], np.cumsum(self.document_frequency)]).astype(np.int64)
            self._term_major = (starts, rows[order], self.counts[order])
        return self._term_major

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """Return the BM25 score of every passage for the query's terms."""
        n = len(self.lengths)
        wanted = sorted({self.vocabulary[t] for t in query_terms if t in self.vocabulary})
        if not wanted or n == 0:
            return np.zeros(n, dtype=np.float32)
        starts, rows, counts = self._postings()
        average = float(self.lengths.mean()) or 1.0
        pieces_rows, pieces_weights = [], []
        for term in wanted:
            df = float(self.document_frequency[term])
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            term_rows = rows[starts[term] : starts[term + 1]]
            tf = counts[starts[term] : starts[term + 1]].astype(np.float32)
            norm = K1 * (1 - B + B * self.lengths[term_rows] / average)
            pieces_rows.append(term_rows)
            pieces_weights.append(idf * tf * (K1 + 1) / (tf + norm))
        return np.bincount(
            np.concatenate(pieces_rows), weights=np.concatenate(pieces_weights), minlength=n
        ).astype(np.float32)
