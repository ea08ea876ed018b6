import numpy as np
import pytest

from qa.documents import Passage
from qa.retriever import ANSWER_MARGIN, QuestionError, Retriever, background_level, clean_question
from qa.store import read_index, write_index


class FixedQueries:
    """An embedder whose query vectors are given by the test."""

    name, dim, max_tokens = "fixed", 3, 64

    def __init__(self, vector):
        self.vector = np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)

    def embed_queries(self, texts):
        return np.stack([self.vector for _ in texts])


def snapshot(tmp_path, passage_vectors, background):
    passages = [Passage(f"p{i}", "/d.txt", i, i + 2) for i in range(len(passage_vectors))]
    unit = lambda rows: np.asarray(rows, np.float32) / np.linalg.norm(rows, axis=1, keepdims=True)  # noqa: E731
    write_index(tmp_path, {"documents": [{"source": "/d.txt"}]}, passages, unit(passage_vectors), unit(background))
    return read_index(tmp_path)


def test_clean_question():
    assert clean_question("  Which\n drones?  ") == "Which drones?"
    for empty in ("", " ", "\n\t"):
        with pytest.raises(QuestionError, match="empty"):
            clean_question(empty)


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
