import numpy as np
import pytest

from qa.documents import Passage
from qa.retriever import ANSWER_MARGIN, QuestionError, Retriever, background_level, clean_question
from qa.lexical import Lexicon, terms
from qa.store import IndexContent, read_index, write_index


class FixedQueries:
    """An embedder whose query vectors are given by the test."""

    name, dim, max_tokens = "fixed", 3, 64

    def __init__(self, vector):
        self.vector = np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)

    def count_tokens(self, text):
        return len(text.split()) + 2

    def embed_queries(self, texts):
        return np.stack([self.vector for _ in texts])


def snapshot(tmp_path, passage_vectors, background):
    passages = [Passage(f"p{i}", "/d.txt", i, i + 2) for i in range(len(passage_vectors))]
    unit = lambda rows: np.asarray(rows, np.float32) / np.linalg.norm(rows, axis=1, keepdims=True)  # noqa: E731
    vectors = unit(passage_vectors)
    content = IndexContent(passages, vectors, [[(p.start, p.end)] for p in passages], vectors,
                           Lexicon.build([p.text for p in passages]).to_arrays(), unit(background))
    write_index(tmp_path, {"documents": [{"source": "/d.txt"}]}, content)
    return read_index(tmp_path)


def test_clean_question():
    assert clean_question("  Which\n drones?  ") == "Which drones?"
    for empty in ("", " ", "\n\t"):
        with pytest.raises(QuestionError, match="empty"):
            clean_question(empty)
    for wordless in ("?", "...", " ?! ", "😀"):
        with pytest.raises(QuestionError, match="no words"):
            clean_question(wordless)
    assert clean_question("2022?") == "2022?" and clean_question("无人机?") == "无人机?"


def test_background_level_is_mean_of_top_scores():
    background = np.eye(4, dtype=np.float32)
    query = np.array([0.9, 0.3, 0.1, 0.0], np.float32)
    assert background_level(query, background, top=2) == pytest.approx(0.6)
    assert background_level(query, np.zeros((0, 4), np.float32)) == 0.0


def test_found_when_best_passage_beats_background(tmp_path):
    snap = snapshot(tmp_path, [[1, 0, 0], [0, 1, 0]], [[0, 0, 1], [0, 0.2, 1], [0.1, 0, 1]])
    answer = Retriever(snap, FixedQueries([1, 0.05, 0.1])).ask("q", top_k=2)
    assert answer.found and answer.margin >= ANSWER_MARGIN
    assert [p.passage.text for p in answer.passages] == ["p0", "p1"]


def test_not_found_when_background_scores_as_high(tmp_path):
    snap = snapshot(tmp_path, [[1, 0, 0], [0, 1, 0]], [[1, 0.1, 0], [1, 0, 0.1], [1, 0.05, 0.05]])
    answer = Retriever(snap, FixedQueries([1, 0.05, 0.1])).ask("q")
    assert not answer.found and answer.margin < ANSWER_MARGIN
    assert answer.to_dict()["found"] is False and len(answer.to_dict()["passages"]) == 1


def test_top_k_larger_than_index(tmp_path):
    snap = snapshot(tmp_path, [[1, 0, 0], [0, 1, 0]], [[0, 0, 1]])
    assert len(Retriever(snap, FixedQueries([1, 0, 0])).ask("q", top_k=10).passages) == 2


def random_corpus(rng, n_passages: int, n_sentences: int, words: list[str], length: int):
    """Random unit vectors (8-d) for a query, passages and sentences (sorted owners), and a
    lexicon of random texts: the input of rank_passages, to check against brute force."""
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    passages = unit(rng.normal(size=(n_passages, 8)).astype(np.float32))
    sentences = unit(rng.normal(size=(n_sentences, 8)).astype(np.float32))
    owner = np.sort(rng.integers(0, n_passages, size=n_sentences))
    lexicon = Lexicon.build([" ".join(rng.choice(words, size=length)) for _ in range(n_passages)])
    query = unit(rng.normal(size=8).astype(np.float32))
    return query, passages, sentences, owner, lexicon


def test_rank_passages_matches_brute_force():
    from qa.retriever import RetrievalConfig, rank_passages

    query, passages, sentences, owner, lexicon = random_corpus(
        np.random.default_rng(3), 30, 70, ["alpha", "beta", "gamma", "delta", "omega"], 5)
    config = RetrievalConfig(sentence_weight=0.4, lexical_weight=0.2)
    order, scores, evidence = rank_passages(query, passages, sentences, owner, lexicon, ["alpha", "zzz"], config, 5)

    dense = passages @ query
    best = np.array([max([sentences[j] @ query for j in range(70) if owner[j] == i], default=dense[i])
                     for i in range(30)])
    semantic = 0.6 * dense + 0.4 * best
    bm25 = lexicon.scores(["alpha", "zzz"])
    expected = semantic + 0.2 * 0.5 * bm25 / bm25.max()
    assert list(order) == list(np.argsort(-expected)[:5])
    assert np.allclose(scores, expected[order], atol=1e-5)
    assert evidence == pytest.approx(semantic[order[0]], abs=1e-5)


def test_rank_passages_among_candidates_matches_brute_force_on_those_rows():
    from qa.retriever import RetrievalConfig, rank_passages

    rng = np.random.default_rng(5)
    query, passages, sentences, owner, lexicon = random_corpus(rng, 40, 90, ["alpha", "beta", "gamma"], 4)
    config = RetrievalConfig(sentence_weight=0.4, lexical_weight=0.2)
    args = (query, passages, sentences, owner, lexicon, ["alpha"], config)
    full = rank_passages(*args, 40)
    everything = rank_passages(*args, 40, candidates=np.arange(40)[::-1])
    assert list(full[0]) == list(everything[0]) and np.allclose(full[1], everything[1])
    picked = rng.choice(40, size=12, replace=False)
    order, scores, _ = rank_passages(*args, 5, candidates=np.r_[picked, picked[:3], -1])  # repeats, -1 of FAISS
    expected = [i for i in full[0] if i in set(picked)][:5]
    assert list(order) == expected
    assert np.allclose(scores, [full[1][list(full[0]).index(i)] for i in expected], atol=1e-6)


def test_lexical_signal_fades_when_question_shares_no_terms():
    from qa.retriever import RetrievalConfig, rank_passages

    passages = np.eye(3, dtype=np.float32)
    lexicon = Lexicon.build(["drone iran", "roket korea", "putin kim"])
    query = np.array([0.1, 1.0, 0.0], np.float32) / np.linalg.norm([0.1, 1.0, 0.0])
    config = RetrievalConfig(sentence_weight=0.0, lexical_weight=5.0)
    order, _, _ = rank_passages(query, passages, np.zeros((0, 3), np.float32), np.zeros(0, int), lexicon,
                                ["drone"], config, 3)
    assert order[0] == 0  # the shared term wins with a large weight
    order, _, _ = rank_passages(query, passages, np.zeros((0, 3), np.float32), np.zeros(0, int), lexicon,
                                ["which", "uavs"], config, 3)
    assert order[0] == 1  # no shared term: dense order stands


def test_highlight_is_the_sentence_closest_to_the_question(tmp_path):
    from qa.store import IndexContent

    text = "First sentence. Second sentence."
    passage = Passage(text, "/d.txt", 100, 100 + len(text))
    vectors = np.array([[1, 0, 0]], np.float32)
    sentences = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    content = IndexContent([passage], vectors, [[(100, 115), (116, 132)]], sentences,
                           Lexicon.build([text]).to_arrays(), np.array([[0, 0, 1]], np.float32))
    write_index(tmp_path, {"documents": [{"source": "/d.txt"}]}, content)
    answer = Retriever(read_index(tmp_path), FixedQueries([1, 0.1, 0])).ask("q")
    start, end = answer.passages[0].highlight
    assert text[start:end] == "Second sentence."
    assert answer.to_dict()["passages"][0]["highlight"] == {"start": 16, "end": 32}


def test_question_longer_than_the_model_window_is_truncated_with_a_note(tmp_path):
    snap = snapshot(tmp_path, [[1, 0, 0]], [[0, 0, 1]])
    answer = Retriever(snap, FixedQueries([1, 0, 0])).ask("word " * 100)
    assert answer.truncated and answer.to_dict()["truncated"] is True
    assert not Retriever(snap, FixedQueries([1, 0, 0])).ask("short").truncated


def test_a_large_index_rescoring_faiss_candidates_answers_like_scoring_everything(tmp_path, monkeypatch):
    """Past qa.ann.EXACT_MAX passages only FAISS's (approximate) neighbours are re-scored:
    the answers must be those of exact scoring over every passage."""
    from conftest import FakeEmbedder

    from qa import ann
    from qa.indexer import build_index
    from qa.store import read_index

    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(400)]
    doc = tmp_path / "many.txt"
    doc.write_text("\n\n".join(" ".join(rng.choice(words, size=8)) + "." for _ in range(1500)), encoding="utf-8")
    monkeypatch.setattr(ann, "EXACT_MAX", 1000)  # so that 1500 passages get the approximate index
    embedder = FakeEmbedder(dim=32)
    build_index(tmp_path / "index", [doc], embedder)
    snapshot = read_index(tmp_path / "index")
    import faiss

    assert isinstance(snapshot.vector_store.faiss_index, faiss.IndexRefine)
    questions = [" ".join(rng.choice(words, size=4)) for _ in range(40)]
    retriever = Retriever(snapshot, embedder)
    monkeypatch.setattr(ann, "EXACT_MAX", 10**6)  # every passage scored
    assert retriever.candidates(embedder.embed_queries(["w1 w2"])[0], 5) is None
    exact = [retriever.ask(q, top_k=1).passages[0].passage for q in questions]
    monkeypatch.setattr(ann, "EXACT_MAX", 1000)  # FAISS's candidates only
    assert retriever.candidates(embedder.embed_queries(["w1 w2"])[0], 5) is not None
    agree = sum(retriever.ask(q, top_k=1).passages[0].passage == e for q, e in zip(questions, exact))
    assert agree >= 38, agree


def test_terms_drop_function_words_but_keep_words_an_answer_turns_on():
    # Sastrawi's stopword list drops "masalah", "dua" and "pertama"; a factoid
    # question about a problem, a count or an order needs them.
    assert terms("Masalah apa yang dihadapi Rusia dengan dua drone pertama?") == \
        ["masalah", "hadap", "rusia", "dua", "drone", "pertama"]
    assert terms("What is the problem with the drones?") == ["problem", "drones"]


def test_context_is_cleaned_like_a_question_and_comes_after_it(tmp_path):
    snap = snapshot(tmp_path, [[1, 0, 0], [0, 1, 0]], [[0, 0, 1]])
    seen = []

    class Recording(FixedQueries):
        def embed_queries(self, texts):
            seen.extend(texts)
            return super().embed_queries(texts)

    answer = Retriever(snap, Recording([1, 0.05, 0.1])).ask("What are they for?", context="Which\x00 drones\udcff?")
    # the question with its context for retrieval, then alone for the highlighted sentence
    assert seen == ["What are they for? Which drones??", "What are they for?"] and answer.context == "Which drones??"
    # A context with nothing left after cleaning is no context.
    assert Retriever(snap, Recording([1, 0.05, 0.1])).ask("q", context="\x00\x01").context is None


def test_only_the_question_counts_towards_truncation(tmp_path):
    snap = snapshot(tmp_path, [[1, 0, 0], [0, 1, 0]], [[0, 0, 1]])
    long_topic = " ".join(["drone"] * 100)
    assert not Retriever(snap, FixedQueries([1, 0.05, 0.1])).ask("What for?", context=long_topic).truncated
    assert Retriever(snap, FixedQueries([1, 0.05, 0.1])).ask(long_topic).truncated


def test_terms_fold_accents_of_latin_letters_only_and_reduplication():
    import unicodedata

    assert terms("Irán Perú crème Việt") == ["iran", "peru", "creme", "viet"]
    assert terms("Drone-drone Iran") == ["drone", "iran"]
    assert terms("ドローン どの") == ["ドローン", "どの"]  # the voicing mark is part of the letter
    nfd = unicodedata.normalize("NFD", "Le café crème à Zürich")
    lexicon = Lexicon.build([nfd, "something else"])
    assert lexicon.scores(terms("café crème Zürich"))[0] > 0 and lexicon.coverage(terms("café Zürich")) == 1


def test_answer_floor_refuses_a_best_cosine_under_it(tmp_path):
    from qa.retriever import RetrievalConfig

    # The best passage beats the background by far (margin ~0.2), but its cosine is 0.2.
    snap = snapshot(tmp_path, [[0.2, 0.98, 0], [0, 1, 0]], [[0, 0, 1], [0, 0.1, 1]])
    query = [1, 0, 0.05]
    assert Retriever(snap, FixedQueries(query)).ask("q").found  # no floor: today's rule answers
    floored = Retriever(snap, FixedQueries(query), RetrievalConfig(answer_floor=0.3)).ask("q")
    assert not floored.found and floored.margin >= ANSWER_MARGIN
    assert floored.to_dict()["found"] is False and len(floored.passages) == 1
    assert Retriever(snap, FixedQueries(query), RetrievalConfig(answer_floor=0.15)).ask("q").found


def test_answers_needs_both_margin_and_floor():
    from qa.retriever import RetrievalConfig, answers

    config = RetrievalConfig(answer_margin=0.125, answer_floor=0.375)
    assert answers(0.5, 0.25, config)
    assert not answers(0.5, 0.4375, config)  # margin 0.0625 under 0.125
    assert not answers(0.25, 0.0, config)  # margin 0.25, cosine under the floor
    assert answers(0.375, 0.25, config)  # both exactly at their thresholds


def test_default_floor_never_binds():
    from qa.retriever import RetrievalConfig, answers

    config = RetrievalConfig()
    for evidence, background in ((-1.0, -1.0 - ANSWER_MARGIN), (-0.5, -0.9), (0.0, -ANSWER_MARGIN)):
        assert answers(evidence, background, config) == (evidence - background >= ANSWER_MARGIN)


def test_evidence_sentence_weight_judges_by_the_best_sentence():
    from qa.retriever import RetrievalConfig, rank_passages

    # Passage 0's own vector is far from the question, one of its sentences is the question.
    passages = np.array([[0.6, 0.8, 0], [0, 0.8, 0.6]], np.float32)
    sentences = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    owner = np.array([0, 0, 1])
    query = np.array([1, 0, 0], np.float32)
    args = (query, passages, sentences, owner, None, [])
    order, scores, evidence = rank_passages(*args, RetrievalConfig(sentence_weight=0.0), 2)
    assert order[0] == 0 and evidence == pytest.approx(0.6)  # None: the ranking's own (the dense cosine)
    config = RetrievalConfig(sentence_weight=0.0, evidence_sentence_weight=0.75)
    order2, scores2, evidence = rank_passages(*args, config, 2)
    assert list(order2) == list(order) and np.allclose(scores2, scores)  # the ranking is unchanged
    assert evidence == pytest.approx(0.25 * 0.6 + 0.75 * 1.0)
    # On a large index (FAISS candidates) the evidence is the same.
    assert rank_passages(*args, config, 2, candidates=np.array([1, 0]))[2] == pytest.approx(evidence)
    # A passage without sentences is judged by its own cosine.
    no_sentences = rank_passages(query, passages, sentences[2:], owner[2:], None, [], config, 2)
    assert no_sentences[2] == pytest.approx(0.6)


def test_evidence_sentence_weight_lets_a_sentence_answer_above_the_floor(tmp_path):
    from qa.retriever import RetrievalConfig

    passages = [Passage(f"p{i}", "/d.txt", i, i + 2) for i in range(2)]
    vectors = np.array([[0.3, 0.95, 0], [0, 0.3, 1]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sentences = np.array([[1, 0, 0], [0, 0.3, 1]], np.float32)  # passage 0's one sentence is the question
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    content = IndexContent(passages, vectors, [[(p.start, p.end)] for p in passages], sentences,
                           Lexicon.build([p.text for p in passages]).to_arrays(), np.array([[0, 0, 1]], np.float32))
    write_index(tmp_path, {"documents": [{"source": "/d.txt"}]}, content)
    snap = read_index(tmp_path)
    floor = dict(sentence_weight=0.0, answer_margin=0.0, answer_floor=0.5)
    assert not Retriever(snap, FixedQueries([1, 0, 0]), RetrievalConfig(**floor)).ask("q").found  # cosine 0.3
    config = RetrievalConfig(**floor, evidence_sentence_weight=0.7)
    answer = Retriever(snap, FixedQueries([1, 0, 0]), config).ask("q")
    assert answer.found and answer.passages[0].passage.text == "p0"
