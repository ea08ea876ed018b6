"""Chunking by token offsets (issue 14, item 9): the same passages as counting prefixes,
in time linear in the text.

The old way (:func:`qa.documents.pack_sentences`, no ``token_offsets``) is the
reference: every test cuts the same documents both ways and compares the passages.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.documents import ChunkSettings, Document, chunk_document
from test_properties import PROPERTY, any_text

REPO = Path(__file__).resolve().parents[1]
WORD = re.compile(r"\S+")


class WordTokens:
    """A tokenizer that makes one token of every word, two specials: counter and offsets."""

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def token_offsets(self, text: str):
        return [m.span() for m in WORD.finditer(text)]


class SubwordTokens:
    """A token every 3 characters of each word (as a subword tokenizer cuts long words)."""

    def count_tokens(self, text: str) -> int:
        return sum(math.ceil(len(w) / 3) for w in text.split()) + 3

    def token_offsets(self, text: str):
        return [(m.start() + i, min(m.end(), m.start() + i + 3)) for m in WORD.finditer(text)
                for i in range(0, m.end() - m.start(), 3)]


class WrongOffsets(WordTokens):
    """Offsets that disagree with the counter (a tokenizer that doesn't tokenize words apart)."""

    def token_offsets(self, text: str):
        return super().token_offsets(text)[::2]


def both_ways(text: str, tokens, max_tokens: int = 24, title_as_context: bool = False):
    settings = ChunkSettings(max_tokens=max_tokens, title_as_context=title_as_context)
    document = Document("doc.txt", text, "0")
    old = chunk_document(document, tokens.count_tokens, settings)
    new = chunk_document(document, tokens.count_tokens, settings, token_offsets=tokens.token_offsets)
    return old, new


@PROPERTY
@given(any_text, st.sampled_from([WordTokens(), SubwordTokens()]), st.integers(4, 60), st.booleans())
def test_offsets_give_the_passages_prefix_counts_give(text, tokens, max_tokens, title_as_context):
    old, new = both_ways(text, tokens, max_tokens, title_as_context)
    assert new == old


def prose(shape: str, size: int, seed: int = 7) -> str:
    sentences = []
    for name in ("background_en.txt", "background_id.txt"):
        sentences += [s for s in (REPO / "qa" / "data" / name).read_text(encoding="utf-8").splitlines() if s]
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        if shape == "paragraphs":
            piece = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 6))) + "\n\n"
        elif shape == "one-line":
            piece = rng.choice(sentences) + " "
        elif shape == "no-punctuation":
            piece = " ".join(w.strip(".!?…,;:") for w in rng.choice(sentences).split()) + " "
        else:  # lists, headings and hard-wrapped lines
            piece = rng.choice(["## Heading\n\n", "- item one\n- item two\n\n", "Title\n\n"]) + \
                "\n".join(rng.choice(sentences) for _ in range(3)) + "\n\n"
        out.append(piece)
        n += len(piece)
    return "".join(out)


@pytest.mark.parametrize("shape", ["paragraphs", "one-line", "no-punctuation", "mixed"])
@pytest.mark.parametrize("tokens", [WordTokens(), SubwordTokens()], ids=["words", "subwords"])
def test_the_same_passages_on_prose_of_every_shape(shape, tokens):
    old, new = both_ways(prose(shape, 60_000), tokens, max_tokens=160)
    assert new == old and len(new) > 10


def test_a_counter_the_offsets_disagree_with_is_used_the_old_way():
    """Offsets that miss tokens are caught on the first passages (a sample: an adversary
    that agrees there is not caught, so only tokenizers that count words apart should
    give offsets)."""
    from qa import token_packing

    text = prose("paragraphs", 5_000)
    tokens = WrongOffsets()
    groups = [(0, len(text))]
    assert token_packing.chunk_groups(text, groups, tokens.count_tokens, tokens.count_tokens, tokens.token_offsets,
                                      "", 40) is None
    old, new = both_ways(text, tokens, 40)
    assert new == old


def test_progress_follows_the_characters_chunked():
    text = prose("paragraphs", 3_000_000)
    tokens = WordTokens()
    calls = []
    chunk_document(Document("doc.txt", text, "0"), tokens.count_tokens, ChunkSettings(max_tokens=160),
                   token_offsets=tokens.token_offsets, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 2 and calls[-1][0] == calls[-1][1]
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("shape", ["one-line", "no-punctuation"])
def test_a_long_line_is_linear_not_quadratic(shape):
    """The old way took ~1 s for 1 MB of one line without sentence ends even with a
    word counter, and grew with the square of a paragraph's length; by offsets, 4 MB
    take about 4 times 1 MB's time."""
    tokens = WordTokens()
    times = {}
    for size in (1_000_000, 4_000_000):
        text = prose(shape, size)
        started = time.perf_counter()
        chunk_document(Document("doc.txt", text, "0"), tokens.count_tokens, ChunkSettings(max_tokens=160),
                       token_offsets=tokens.token_offsets)
        times[size] = time.perf_counter() - started
    assert times[4_000_000] < 8 * times[1_000_000] + 1, times


def real_tokenizer():
    from qa.models.e5_q4 import default_model_dir, is_complete_build
    from qa.paths import cache_dir

    folder = default_model_dir(cache_dir())
    if not is_complete_build(folder):
        pytest.skip("the default model is not built in the cache")
    from tokenizers import Tokenizer

    from qa.token_offsets import token_offsets_for

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    class E5Tokens:
        def count_tokens(self, text: str) -> int:
            return len(tokenizer.encode("passage: " + text).ids)

        token_offsets = token_offsets_for(tokenizer)

    return E5Tokens()


@pytest.mark.model
@pytest.mark.parametrize("shape", ["paragraphs", "one-line", "no-punctuation", "mixed"])
def test_the_same_passages_with_the_real_tokenizer(shape):
    old, new = both_ways(prose(shape, 40_000 if shape != "no-punctuation" else 8_000, seed=3), real_tokenizer(), 160)
    assert new == old and len(new) > 3


@pytest.mark.model
def test_the_same_passages_of_the_bundled_article_and_hostile_text_with_the_real_tokenizer():
    from test_properties import ONE_MB

    tokens = real_tokenizer()
    article = next((REPO / "qa" / "data").glob("*.txt")).read_text(encoding="utf-8")
    corpus = sorted(Path("/work/shared/corpus").glob("*.txt")) if os.path.isdir("/work/shared/corpus") else []
    texts = [article] + [path.read_text(encoding="utf-8") for path in corpus[:1]]
    texts += [ONE_MB[name][:20_000] for name in ("article", "hostile", "emoji-and-rtl", "abbreviations")]
    for text in texts:
        text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)  # no tokenizer takes lone surrogates
        for title_as_context in (False, True):
            old, new = both_ways(text, tokens, 160, title_as_context)
            assert new == old


@pytest.fixture(scope="module")
def e5_tokens():
    return real_tokenizer()


@pytest.mark.model
def test_the_real_tokenizer_counts_words_apart_on_hostile_text(e5_tokens):
    """The remembered word tokens sum to the tokens of the whole text, and the passages agree."""
    import numpy as np

    @settings(PROPERTY, deadline=None)
    @given(any_text)
    def check(text):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            return  # the tokenizer (Rust strings) can't take lone surrogates, either way
        # between plain words, as the chunker's pieces stand after the prompt ("passage: "):
        # a combining mark normalizes otherwise at the very start of a text, and a zero-width
        # or control character at its very end leaves a space that is a token of its own
        # (the chunker asks the counter there)
        joined = " ".join(["a", *text.split(), "a"])
        cached = len(np.asarray(e5_tokens.token_offsets(joined)).reshape(-1, 2))
        whole = len(e5_tokens.token_offsets._whole(joined))
        assert cached == whole
        old, new = both_ways(text, e5_tokens, 40)
        assert new == old

    check()


@pytest.mark.model
@pytest.mark.parametrize("odd", ["<mask>", "x</s>y", "\u0344\u0301", "\u200b", "ab\u200e", "\x01", "\ufeff"])
def test_words_whose_tokens_depend_on_their_neighbours_with_the_real_tokenizer(e5_tokens, odd):
    """Special tokens' text, a word starting with a combining mark, characters the
    normalizer erases or makes spaces: anywhere in a passage, the same passages."""
    words = ("Rusia membeli roket dari Korea Utara pada musim semi " * 12).split()
    for at in (0, 1, 60, 61, 62, 63, len(words)):  # past the first passages, which are checked
        text = " ".join([*words[:at], odd, *words[at:]])
        for max_tokens in range(8, 30):
            old, new = both_ways(text, e5_tokens, max_tokens)
            assert new == old, (at, max_tokens)
