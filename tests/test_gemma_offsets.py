"""EmbeddingGemma's ``token_offsets`` (issue 14, item 9): the chunker cuts by token offsets
with the default model too, into the passages counting prefixes gives.

Its SentencePiece BPE does not split text at spaces first: a few pieces span a space
(``>▁</``, and ``▁▁`` where a text's own "▁" meets a space). Words a token spans are
tied (:mod:`qa.token_packing`), and a passage never starts or ends between them
uncounted. The fast tests read only the built engine's ``tokenizer.model`` (skipped
with the reason when the engine isn't built); the ``model`` ones load the engine.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.documents import normalize_for_model
from qa.paths import BUNDLED_ARTICLE
from test_properties import ONE_MB, PROPERTY, any_text
from test_token_packing import both_ways, prose


def engine_dir() -> Path:
    from qa.models.gemma import gemma_engine_dir, is_gemma_engine_built
    from qa.paths import cache_dir

    if not is_gemma_engine_built(cache_dir()):
        pytest.skip("EmbeddingGemma's engine is not built in the cache (bin/qa ask anything builds it)")
    return gemma_engine_dir(cache_dir())


class GemmaTokens:
    """OnnxEmbedder's own count_tokens and token_offsets on the engine's tokenizer, without
    its ONNX session (which takes seconds and hundreds of MB to open)."""

    count_tokens = None  # set below: the very methods of OnnxEmbedder
    token_offsets = None

    def __init__(self, folder: Path, kind: str):
        from qa.models import onnx_engine

        meta = json.loads((folder / onnx_engine.ENGINE_FILE).read_text(encoding="utf-8"))
        if kind == "sentencepiece":
            if meta.get("sentencepiece") is None:
                pytest.skip("this engine tokenizes with tokenizer.json")
            self._tokenizer = onnx_engine._SentencePieceIds(folder / onnx_engine.SENTENCEPIECE_FILE,
                                                            meta["sentencepiece"])
        else:
            self._tokenizer = onnx_engine._TokenizersIds(folder / onnx_engine.TOKENIZER_FILE)
        self.passage_prompt = meta["passage_prompt"]


def _bind():
    from qa.models.onnx_engine import OnnxEmbedder

    GemmaTokens.count_tokens = OnnxEmbedder.count_tokens
    GemmaTokens.token_offsets = OnnxEmbedder.token_offsets


_bind()


@pytest.fixture(scope="module")
def gemma():
    return GemmaTokens(engine_dir(), "sentencepiece")


def by_offsets(text: str, tokens, max_tokens: int):
    """The spans chunk_groups cuts, None when it gives up for the old way."""
    from qa.cleaning import content_paragraphs, paragraph_groups
    from qa.token_packing import chunk_groups

    groups = paragraph_groups(text, content_paragraphs(text))
    model_tokens = lambda piece: tokens.count_tokens(normalize_for_model(piece))  # noqa: E731
    return chunk_groups(text, groups, model_tokens, tokens.count_tokens, tokens.token_offsets, "", max_tokens)


def no_surrogates(text: str) -> str:
    return "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)  # no tokenizer takes lone surrogates


def over_budget(passages, tokens, max_tokens: int) -> list:
    return [p for p in passages if tokens.count_tokens(normalize_for_model(p.text)) > max_tokens]


def test_offsets_are_those_of_the_passage_after_its_prompt(gemma):
    text = "Rusia membeli 2.000 drone. Ça coûte 3,5 € ﬁn 𝔘😀 日本語のテキスト"
    spans = np.asarray(gemma.token_offsets(text))
    overhead = gemma.count_tokens("a") - len(gemma.token_offsets("a"))  # the prompt and the specials
    assert overhead + len(spans) == gemma.count_tokens(text)
    assert spans[0, 0] == 0 and spans[-1, 1] == len(text)
    assert (spans[:, 1] > spans[:, 0]).all() and (np.diff(spans[:, 1]) >= 0).all()
    # a character spelt as bytes (byte fallback) gives a token per byte, each within it
    at = text.index("𝔘")
    assert ((spans[:, 0] == at) & (spans[:, 1] == at + 1)).sum() >= 2


@pytest.mark.parametrize("shape", ["paragraphs", "one-line", "no-punctuation", "mixed"])
def test_the_same_passages_on_prose_and_by_offsets(gemma, shape):
    text = prose(shape, 40_000 if shape != "no-punctuation" else 8_000, seed=3)
    assert by_offsets(text, gemma, 160) is not None  # the new way did cut it
    for title_as_context in (False, True):
        old, new = both_ways(text, gemma, 160, title_as_context)
        assert new == old and len(new) > 3
        assert not over_budget(new, gemma, 160)


def test_the_same_passages_of_the_bundled_article_and_hostile_text(gemma):
    texts = [BUNDLED_ARTICLE.read_text(encoding="utf-8")] + [ONE_MB[name][:20_000] for name in ONE_MB]
    for text in map(no_surrogates, texts):
        for title_as_context in (False, True):
            old, new = both_ways(text, gemma, 160, title_as_context)
            assert new == old
        for max_tokens in (40, 160):
            assert not over_budget(both_ways(text, gemma, max_tokens)[1], gemma, max_tokens)


def test_words_a_token_spans_are_tied_and_counted_by_the_counter(gemma):
    """``>▁</`` spans a space; the text's own "▁" beside a space makes one "▁▁" of both."""
    from qa.token_packing import SpanCounter, prompt_overhead

    text = "<b>x</b> </i> y ▁ z a▁ b ▁c d"
    overhead = prompt_overhead(gemma.count_tokens, gemma.token_offsets, "")
    counter = SpanCounter(text, 0, len(text), gemma.token_offsets, overhead)
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    tied = [i for i in range(len(words)) if not counter.sure_start[i]]
    assert tied  # at least the ">▁</" and the "▁▁" are seen
    for i, (start, _) in enumerate(words):
        for _, end in words[i:]:
            counted = counter.count(start, end)
            assert counted is None or counted == gemma.count_tokens(text[start:end])
    for max_tokens in range(overhead + 1, overhead + 14):
        old, new = both_ways(text, gemma, max_tokens)
        assert new == old


PIECES = ["the", "rumah", "北朝鮮", "مرحبا", "😀", "𝔘", "ﬁn", "e\u0301", "Å", "<b>", "</b>", ">", "</", "▁", "▁▁",
          "x>", "</y", ".", ",", "—", "«", "»", "2.000", "\u200b", "\ufeff", "한국어", "ไม่มี", "Dr.", "ß", "İ"]
multilingual = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=60).map(
    lambda parts: " ".join(parts))


@settings(PROPERTY, deadline=None)  # both ways, the old one slow on long hostile text
@given(st.one_of(multilingual, any_text), st.integers(8, 60), st.booleans())
def test_the_same_passages_on_random_multilingual_text(gemma, text, max_tokens, title_as_context):
    text = no_surrogates(text)
    old, new = both_ways(text, gemma, max_tokens, title_as_context)
    assert new == old


@settings(PROPERTY, deadline=None)  # both ways, the old one slow on long hostile text
@given(st.one_of(multilingual, any_text), st.randoms(use_true_random=False))
def test_a_span_is_never_counted_under_what_the_model_counts(gemma, text, rng):
    """Where the counter answers, it answers what count_tokens says: never fewer (a passage
    over the budget would be cut by the model without a word)."""
    from qa.token_packing import SpanCounter, prompt_overhead

    text = no_surrogates(text)
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return
    overhead = prompt_overhead(gemma.count_tokens, gemma.token_offsets, "")
    counter = SpanCounter(text, 0, len(text), gemma.token_offsets, overhead)
    for _ in range(20):
        i = rng.randrange(len(words))
        j = rng.randrange(i, len(words))
        counted = counter.count(words[i][0], words[j][1])
        if counted is not None:
            assert counted == gemma.count_tokens(normalize_for_model(text[words[i][0] : words[j][1]]))


def test_a_long_text_cut_into_blocks_gives_the_same_passages(gemma, monkeypatch):
    """Blocks are tokenized apart; they are cut at a space between letters, and no span
    starts or ends at a block's edge uncounted."""
    from qa import token_packing

    monkeypatch.setattr(token_packing, "BLOCK_CHARS", 997)
    rng = random.Random(5)
    text = " ".join(rng.choice(PIECES) for _ in range(4_000))
    old, new = both_ways(text, gemma, 60)
    assert new == old


@pytest.mark.model
def test_the_tokenizers_file_gives_the_same_offsets_and_passages():
    """The engine's tokenizer.json (used when SentencePiece isn't) agrees with SentencePiece."""
    folder = engine_dir()
    spm, fast = GemmaTokens(folder, "sentencepiece"), GemmaTokens(folder, "tokenizers")
    texts = [BUNDLED_ARTICLE.read_text(encoding="utf-8"), prose("mixed", 20_000, seed=3),
             no_surrogates(ONE_MB["hostile"][:10_000]), "<b>x</b> </i> y ▁ z a▁ b ▁c d 𝔘😀 ﬁn"]
    for text in texts:
        words = " ".join(normalize_for_model(text).split())
        assert len(fast.token_offsets(words)) == len(spm.token_offsets(words))
        old, new = both_ways(text, fast, 160)
        assert new == old == both_ways(text, spm, 160)[1]


@pytest.mark.model
def test_the_engine_cuts_by_offsets():
    """The loaded OnnxEmbedder offers token_offsets, and qa's chunking of the bundled
    article by it is the counting one."""
    from qa.models.onnx_engine import OnnxEmbedder

    embedder = OnnxEmbedder(engine_dir(), prepack=False)
    old, new = both_ways(BUNDLED_ARTICLE.read_text(encoding="utf-8"), embedder, 160, True)
    assert new == old and not over_budget(new, embedder, 160)


@settings(PROPERTY, deadline=None)  # both ways, the old one slow on long hostile text
@given(st.one_of(multilingual, any_text))
def test_remembered_words_give_the_offsets_of_the_whole_text(gemma, text):
    """Words (and runs of words tied by ``>`` or ``▁``) tokenized alone and remembered give
    the very spans of the text tokenized whole."""
    words = " ".join(unicodedata.normalize("NFC", no_surrogates(text)).split())
    gemma.token_offsets("a")
    remembered = np.asarray(gemma.token_offsets(words)).reshape(-1, 2)
    assert np.array_equal(remembered, gemma._offsets._whole(words))


def test_the_warm_services_client_cuts_by_the_engines_offsets(gemma, monkeypatch):
    """qa ask and qa chat re-read changed documents through the warm service's client: it
    gets the engine's token_offsets, its tokenizer loaded only when a document is cut."""
    engine_dir()
    from qa import embed_service, embedder

    class Served:
        count_tokens = gemma.count_tokens

    served = Served()
    monkeypatch.setattr(embed_service, "connect", lambda key, fallback: served)
    assert embedder._gemma_for_questions(None, True) is served
    assert served.token_offsets._offsets is None  # nothing loaded for a question
    text = BUNDLED_ARTICLE.read_text(encoding="utf-8")
    words = " ".join(normalize_for_model(text).split())
    assert np.array_equal(served.token_offsets(words), gemma.token_offsets(words))
    old, new = both_ways(text, served, 160)
    assert new == old
