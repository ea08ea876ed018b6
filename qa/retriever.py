"""Questions to ranked passages, and the judgement that nothing answers.

The "no answer" signal: a question's best cosine against the index means little on
its own, because some questions score high against any text. So each question is
also scored against bundled background text on unrelated topics, and a passage
counts as an answer only when it beats what the same question scores against that
background by a margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qa.documents import Passage, normalize_for_model
from qa.embedder import Embedder
from qa.store import Snapshot

# The best passage must beat the mean of the question's top background scores by
# this much to count as an answer. Set with the default model on eval/article.jsonl.
ANSWER_MARGIN = 0.0
BACKGROUND_TOP = 3


class QuestionError(Exception):
    """The question can't be asked; the message is one line for the user."""


@dataclass(frozen=True)
class RetrievedPassage:
    """A passage with its cosine similarity to the question."""

    passage: Passage
    score: float

    def to_dict(self) -> dict:
        """Return the passage as the JSON contract's passage object."""
        p = self.passage
        return {"text": p.text, "score": round(self.score, 6), "source": p.source, "start": p.start, "end": p.end}


@dataclass
class Answer:
    """The outcome of one question: ranked passages and whether they answer it.

    ``margin`` is the best score minus the question's background level; ``found``
    is ``margin >= ANSWER_MARGIN``.
    """

    question: str
    found: bool
    passages: list[RetrievedPassage]
    margin: float
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return the answer as the ``qa ask --json`` object."""
        return {
            "question": self.question,
            "found": self.found,
            "margin": round(self.margin, 6),
            "passages": [p.to_dict() for p in self.passages],
            **self.extras,
        }


def clean_question(question: str) -> str:
    """Return the question ready for the model, or raise :class:`QuestionError` if empty."""
    cleaned = normalize_for_model(question)
    if not cleaned:
        raise QuestionError("the question is empty")
    return cleaned


def background_level(query: np.ndarray, background: np.ndarray, top: int = BACKGROUND_TOP) -> float:
    """Return the mean of the ``top`` best cosines of ``query`` against ``background`` rows.

    This is how high the question scores against text that cannot answer it. With no
    background rows it is 0.
    """
    if background.shape[0] == 0:
        return 0.0
    scores = background @ query
    top = min(top, scores.shape[0])
    return float(np.sort(scores)[-top:].mean())


class Retriever:
    """Answers questions from one index snapshot with one embedding model."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder):
        self.snapshot = snapshot
        self.embedder = embedder

    def closest_passages(self, query: np.ndarray, k: int) -> list[RetrievedPassage]:
        """Return the ``k`` passages whose vectors are closest to ``query``, best first."""
        if not self.snapshot.passages:
            return []
        scores, ids = self.snapshot.search(query[None, :], k)
        return [
            RetrievedPassage(self.snapshot.passages[int(i)], float(s))
            for s, i in zip(scores[0], ids[0])
            if i >= 0
        ]

    def ask(self, question: str, top_k: int = 1) -> Answer:
        """Answer ``question`` with the ``top_k`` best passages and a found/not-found verdict."""
        cleaned = clean_question(question)
        query = self.embedder.embed_queries([cleaned])[0]
        passages = self.closest_passages(query, max(1, top_k))
        best = passages[0].score if passages else float("-inf")
        margin = best - background_level(query, self.snapshot.background)
        return Answer(question, bool(passages) and margin >= ANSWER_MARGIN, passages, margin)
