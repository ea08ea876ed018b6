import re
from pathlib import Path

import pytest

from qa.documents import (
    ChunkSettings,
    Document,
    DocumentError,
    chunk_document,
    content_paragraphs,
    find_title,
    is_debris,
    pack_sentences,
    passage_model_text,
    split_long_span,
    split_sentences,
)
from qa.extract import document_from_bytes, read_document
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
    headline = "Rusia Akan Membeli Jutaan Roket-Peluru Artileri dari Korea Utara"
    assert doc.text[title[0]:title[1]] == headline
    passages = chunk_document(doc, lambda t: words(t) + 2, ChunkSettings())
    assert all(p.title == headline for p in passages)
    # A counter line parts the headline from the lede, so the headline is context
    # only: no passage holds it or the debris.
    assert all("views" not in p.text and headline not in p.text for p in passages)
    assert "Kementerian Pertahanan Rusia" in passages[0].text
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


def test_passages_never_cross_paragraphs_except_from_the_title():
    doc = document_from_bytes(b"Title line\n\nFirst para one. First para two.\n\nSecond para.", "t.txt")
    texts = [p.text for p in chunk_document(doc, words, ChunkSettings())]
    assert texts == ["Title line\n\nFirst para one. First para two.", "Second para."]


def test_title_only_document_still_yields_a_passage():
    doc = document_from_bytes(b"Just a heading", "h.txt")
    assert [p.text for p in chunk_document(doc, words, ChunkSettings())] == ["Just a heading"]


def test_offsets_survive_crlf_and_bom():
    doc = document_from_bytes("\ufeffHead\r\n\r\nBody one.\r\nBody two.\r\n".encode(), "crlf.txt")
    passages = chunk_document(doc, words, ChunkSettings())
    assert [p.text for p in passages] == ["Head\r\n\r\nBody one.\r\nBody two."]
    assert all(doc.text[p.start:p.end] == p.text for p in passages)
    sentences = split_sentences(doc.text, passages[0].start, passages[0].end)
    assert [doc.text[s:e] for s, e in sentences] == ["Head\r\n\r\nBody one.", "Body two."]


def test_a_short_first_line_is_kept_with_the_text_after_it():
    text = "The office wifi password is hunter2\n\nThe printer is on the third floor.\n"
    passages = chunk_document(document_from_bytes(text.encode(), "notes.txt"), words, ChunkSettings())
    assert [p.text for p in passages] == [text.strip()]
    assert passages[0].start == 0 and passages[0].title == "The office wifi password is hunter2"


def test_title_stays_with_the_first_sentence_when_the_paragraph_is_cut():
    text = "Harbour news\n\nThe harbour opens on Monday. Ships queue at the gate. Fees rise in May."
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings(max_tokens=7))
    assert [p.text for p in passages] == [
        "Harbour news\n\nThe harbour opens on Monday.", "Ships queue at the gate.", "Fees rise in May."]


def test_title_as_context_is_not_repeated_in_the_passage_that_starts_with_it():
    settings = ChunkSettings(title_as_context=True)
    doc = Document("d", "Harbour news\n\nShips queue.\n\nFees rise.", "")
    first, second = chunk_document(doc, words, settings)
    assert passage_model_text(first, settings) == "Harbour news Ships queue."
    assert passage_model_text(second, settings) == "Harbour news. Fees rise."
    later = Document("d", "Harbour news\n\nShips queue.\n\nHarbour news travels fast.", "")
    assert passage_model_text(chunk_document(later, words, settings)[1], settings) == (
        "Harbour news. Harbour news travels fast.")


def test_a_title_parted_from_the_text_by_debris_is_context_only():
    text = "Harbour to reopen\n\n1.234 views\n\nThe harbour opens on Monday.\n"
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings())
    assert [(p.text, p.title) for p in passages] == [("The harbour opens on Monday.", "Harbour to reopen")]


def test_a_number_written_under_text_is_kept():
    text = "Door code\n4711\n\nPhone\n+62 812-3456\n\nThe wifi is down.\n\n12\n"
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings())
    # the page number alone is debris
    assert [p.text for p in passages] == ["Door code\n4711", "Phone\n+62 812-3456", "The wifi is down."]
    text = "Revenue\n1,234\n5,678\n\nThe page ends with this sentence.\n12\n\n7\nThe next page starts.\n"
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings())
    # numbers under a label are kept; a page number under a finished sentence or above text is not
    assert [p.text for p in passages] == ["Revenue\n1,234\n5,678", "The page ends with this sentence.",
                                          "The next page starts."]


def test_a_heading_starts_the_paragraph_it_heads():
    text = "# Office notes\n\n## Wifi\n\nThe password is hunter2.\n\n## Printer\n\nThird floor.\n"
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings())
    assert [p.text for p in passages] == [
        "# Office notes\n\n## Wifi\n\nThe password is hunter2.", "## Printer\n\nThird floor."]
    assert all(p.title == "# Office notes" for p in passages)


def test_a_heading_followed_by_debris_or_nothing_stays_alone():
    text = "Some text here.\n\nSection two\n\nAdvertisement\n\nMore text.\n\nThe end"
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings())
    assert [p.text for p in passages] == ["Some text here.", "Section two", "More text.", "The end"]


def test_a_list_item_is_not_a_title():
    text = "- Alice phone 555-0101\n\n- Bob phone 555-0199\n"
    assert find_title(text, content_paragraphs(text)) is None
    assert find_title("# Notes\n\nText.", content_paragraphs("# Notes\n\nText.")) == (0, 7)


WIKI = ("Fact 4: a survey of the valley counted eleven farms and two mills, according to the survey "
        "published in 1904.[4][5] Fact 5: the mill burned down in 1911.[a] Fact 6: it was rebuilt "
        "in stone by the same family.[note 1] \"It will stand,\" the owner said.\"[6] Fact 7: it did.")

DOCUMENT_SHAPES = {
    "title and paragraphs": "Harbour news\n\nThe harbour opens on Monday. Ships queue.\n\nFees rise in May.\n",
    "notes": "The office wifi password is hunter2\n\nThe printer is on the third floor.\n",
    "single short line": "door code 4711 kitchen",
    "markdown with headings": ("# Office notes\n\n## Wifi\n\nThe password is hunter2.\n\n"
                               "## Printer\nThird floor, ask Bob for toner\n\n### Misc\n\nNothing else\n"),
    "markdown list": "- Alice phone 555-0101\n- Bob phone 555-0199\n* Carol phone 555-0123\n",
    "list with blank lines": "- Alice phone 555-0101\n\n- Bob phone 555-0199\n\n- Carol phone 555-0123\n",
    "numbered list under a heading": "Contacts\n\n1. Alice 555-0101\n2) Bob 555-0199\n10. Carol 555-0123\n",
    "title, debris, text": "Harbour to reopen\n\n1.234 views\n\nThe harbour opens on Monday.\n",
    "title, text": "Harbour to reopen\n\nThe harbour opens on Monday.\n",
    "wikipedia": WIKI,
}


def assert_every_word_is_in_a_passage(text: str, passages) -> None:
    """Every word of every line that is not debris lies inside some passage, or is
    the title that every passage carries as context."""
    covered = {i for p in passages for i in range(p.start, p.end)}
    for line in re.finditer(r"[^\r\n]+", text):
        if is_debris(line.group()) or all(p.title == line.group().strip() for p in passages):
            continue
        for word in re.finditer(r"\S+", line.group()):
            start = line.start() + word.start()
            assert set(range(start, start + len(word.group()))) <= covered, word.group()


@pytest.mark.parametrize("max_tokens", [6, 160])
@pytest.mark.parametrize("shape", sorted(DOCUMENT_SHAPES))
def test_every_word_of_a_document_is_in_a_passage(shape, max_tokens):
    text = DOCUMENT_SHAPES[shape]
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings(max_tokens=max_tokens))
    assert_every_word_is_in_a_passage(text, passages)
    assert all(p.text == text[p.start:p.end] for p in passages)


def test_bundled_article_keeps_every_word_but_debris():
    doc = read_document(BUNDLED_ARTICLE)
    passages = chunk_document(doc, lambda t: words(t) + 2, ChunkSettings(max_tokens=40))
    assert_every_word_is_in_a_passage(doc.text, passages)


def test_citation_markers_close_the_sentence_before_them():
    assert sentences_of(WIKI) == [
        "Fact 4: a survey of the valley counted eleven farms and two mills, according to the survey "
        "published in 1904.[4][5]",
        "Fact 5: the mill burned down in 1911.[a]",
        "Fact 6: it was rebuilt in stone by the same family.[note 1]",
        "\"It will stand,\" the owner said.\"[6]",
        "Fact 7: it did.",
    ]
    assert sentences_of("Apples, pears etc.[2] Then plums.") == ["Apples, pears etc.[2]", "Then plums."]
    assert sentences_of("See [1] and [2]. [3] is older.") == ["See [1] and [2].", "[3] is older."]


def test_passages_of_cited_text_end_at_sentence_ends():
    text = " ".join(WIKI for _ in range(4))
    passages = chunk_document(Document("d", text, ""), words, ChunkSettings(max_tokens=24))
    assert len(passages) > 4
    assert all(p.text.endswith(("]", "did.")) for p in passages), [p.text[-30:] for p in passages]


@pytest.mark.parametrize("marker", ["- ", "* ", "+ ", "• ", "1. ", "1) "])
def test_each_list_item_is_a_sentence(marker):
    text = f"Contacts:\n{marker}Alice phone 555-0101\n{marker}Bob phone 555-0199\nCall before noon\n"
    assert sentences_of(text) == [
        "Contacts:", f"{marker}Alice phone 555-0101", f"{marker}Bob phone 555-0199", "Call before noon"]


def test_a_list_item_goes_on_on_indented_lines():
    text = "- Alice phone 555-0101, or her desk\n  phone when she is in\n- Bob phone 555-0199"
    assert sentences_of(text) == ["- Alice phone 555-0101, or her desk\n  phone when she is in",
                                  "- Bob phone 555-0199"]


def test_numbered_items_in_prose_keep_their_number():
    assert sentences_of("Steps:\n1. Open the lid.\n2. Pour.\n") == ["Steps:", "1. Open the lid.", "2. Pour."]
    assert sentences_of("He was born in 1904. The next year he moved.") == [
        "He was born in 1904.", "The next year he moved."]


def test_a_line_ending_a_sentence_ends_it_at_the_line_break():
    text = "The printer is on the third floor.\nthe wifi password is hunter2!\nask Bob for toner?\n- or Carol"
    assert sentences_of(text) == [
        "The printer is on the third floor.", "the wifi password is hunter2!", "ask Bob for toner?", "- or Carol"]


def test_abbreviations_and_ellipses_at_a_line_break_go_on():
    text = "Pukul 10 a.m.\nwaktu setempat, kata Dr.\nSmith. Kata dia...\nlalu pergi."
    assert sentences_of(text) == ["Pukul 10 a.m.\nwaktu setempat, kata Dr.\nSmith.", "Kata dia...\nlalu pergi."]


def test_hard_wrapped_prose_stays_one_sentence():
    text = ("The committee met on the third floor of the old harbour office, where the\n"
            "minutes of the previous meeting, which had been delayed by the storm, were\n"
            "read aloud and approved without changes by all members present\n"
            "at the time. Then it rained.\n")
    assert sentences_of(text) == [text[: text.index(" Then")], "Then it rained."]


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
