from pathlib import Path

import pytest

from qa.documents import (
    ChunkSettings,
    Document,
    DocumentError,
    chunk_document,
    content_paragraphs,
    document_from_bytes,
    find_title,
    is_debris,
    pack_sentences,
    passage_model_text,
    read_document,
    split_long_span,
    split_sentences,
)
from qa.paths import BUNDLED_ARTICLE


def words(text: str) -> int:
    return len(text.split())


def sentences_of(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    "line",
    ["Internasional057 views", "1.234 views", "Nasional 12 kali dibaca", "Baca juga: Rusia dan Korut",
     "ADVERTISEMENT", "Scroll to continue with content", "***", "12/09/2022", "   "],
)
def test_debris_lines_are_recognised(line):
    assert is_debris(line)


@pytest.mark.parametrize(
    "line",
    ["Rusia Akan Membeli Jutaan Roket-Peluru Artileri dari Korea Utara",
     "The drone was seen 57 times over the border.", "Putin menyatakan hubungan yang lebih erat."],
)
def test_content_lines_are_kept(line):
    assert not is_debris(line)


def test_bundled_article_is_byte_identical_to_the_shared_copy():
    shared = Path(__file__).resolve().parents[2] / "shared" / "corpus" / BUNDLED_ARTICLE.name
    if not shared.exists():
        pytest.skip("shared corpus not beside this checkout")
    assert BUNDLED_ARTICLE.read_bytes() == shared.read_bytes()


def test_bundled_article_title_and_debris():
    doc = read_document(BUNDLED_ARTICLE)
    paragraphs = content_paragraphs(doc.text)
    title = find_title(doc.text, paragraphs)
    assert doc.text[title[0]:title[1]] == "Rusia Akan Membeli Jutaan Roket-Peluru Artileri dari Korea Utara"
    passages = chunk_document(doc, lambda t: words(t) + 2, ChunkSettings())
    assert all("views" not in p.text for p in passages)
    assert all(p.title == doc.text[title[0]:title[1]] for p in passages)
    assert not any(p.text.startswith("Rusia Akan Membeli") for p in passages)
    assert any("Mohajer-6" in p.text for p in passages)


def test_sentences_stay_whole_across_abbreviations_initials_and_dates():
    text = ("Dr. Smith met J. Biden on Monday. Selasa (6/9/2022), laporan itu dirilis. "
            "Harga naik 3.5 persen! \"Why?\" she asked. Kata dia... lalu pergi.")
    assert sentences_of(text) == [
        "Dr. Smith met J. Biden on Monday.",
        "Selasa (6/9/2022), laporan itu dirilis.",
        "Harga naik 3.5 persen!",
        "\"Why?\" she asked.",
        "Kata dia... lalu pergi.",
    ]


def test_sentence_split_does_not_break_before_lowercase():
    assert sentences_of("Pukul 10 a.m. waktu setempat. Lalu selesai.") == [
        "Pukul 10 a.m. waktu setempat.", "Lalu selesai."]


def test_text_without_sentence_boundaries_is_one_sentence():
    assert sentences_of("no punctuation at all here") == ["no punctuation at all here"]
    assert split_sentences("   ") == []


def test_pack_sentences_respects_budget_and_keeps_order():
    text = " ".join(f"Sentence number {i} is here." for i in range(20))
    spans = pack_sentences(text, split_sentences(text), words, 12)
    assert all(words(text[s:e]) <= 12 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_overlong_sentence_is_cut_at_words_and_long_words_at_characters():
    text = "kata " * 30 + "x" * 50
    spans = split_long_span(text, (0, len(text.rstrip())), lambda t: max(words(t), len(t) // 10), 5)
    assert all(max(words(text[s:e]), (e - s) // 10) <= 5 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")


def test_chunk_offsets_point_into_the_document_and_respect_the_token_budget():
    doc = read_document(BUNDLED_ARTICLE)
    settings = ChunkSettings(max_tokens=40)
    count = lambda t: words(t) + 3  # noqa: E731 - prompt and specials cost 3 tokens
    passages = chunk_document(doc, count, settings)
    for p in passages:
        assert p.text == doc.text[p.start:p.end]
        assert count(passage_model_text(p, settings)) <= settings.max_tokens
    assert len(passages) > 10  # paragraphs over 37 words were split


def test_passages_never_cross_paragraphs():
    doc = document_from_bytes(b"Title line\n\nFirst para one. First para two.\n\nSecond para.", "t.txt")
    texts = [p.text for p in chunk_document(doc, words, ChunkSettings())]
    assert texts == ["First para one. First para two.", "Second para."]


def test_title_only_document_still_yields_a_passage():
    doc = document_from_bytes(b"Just a heading", "h.txt")
    assert [p.text for p in chunk_document(doc, words, ChunkSettings())] == ["Just a heading"]


def test_offsets_survive_crlf_and_bom():
    doc = document_from_bytes("\ufeffHead\r\n\r\nBody one.\r\nBody two.\r\n".encode(), "crlf.txt")
    passages = chunk_document(doc, words, ChunkSettings())
    assert [p.text for p in passages] == ["Body one.\r\nBody two."]
    assert all(doc.text[p.start:p.end] == p.text for p in passages)


def test_read_document_errors_are_one_line(tmp_path):
    with pytest.raises(DocumentError, match="no such file"):
        read_document(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    latin1 = read_document(tmp_path / "latin1.txt")  # decoded, with a note, since extraction learned formats
    assert (latin1.text, latin1.note) == ("café", "decoded as Latin-1 (not valid UTF-8)")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02")
    with pytest.raises(DocumentError, match="binary"):
        read_document(tmp_path / "bin.dat")
    with pytest.raises(DocumentError, match="directory"):
        read_document(tmp_path)


def test_document_hash_is_of_the_bytes():
    import hashlib

    doc = document_from_bytes(b"abc", "x")
    assert doc == Document("x", "abc", hashlib.sha256(b"abc").hexdigest())
