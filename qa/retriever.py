"""Questions to ranked passages, and the judgement that nothing answers.

The "no answer" signal: a question's best cosine against the index means little on
its own, because some questions score high against any text. So each question is
also scored against bundled background text on unrelated topics, and a passage
counts as an answer only when it beats what the same question scores against that
background by a margin (and, for a model whose cosines are calibrated, reaches a
floor: :func:`answers`).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from qa.lexical import Lexicon

from qa.documents import Passage, normalize_for_model
from qa.embedder import Embedder
from qa.models.names import GEMMA_MODEL
from qa.store import Snapshot

# The best passage must beat the mean of the question's top background scores by
# this much to count as an answer. Calibrated with the default model on the valid
# splits (bench/tune.py): the largest margin that refuses at most 5% of the answerable
# questions of TyDi, FacQA and IDK-MRC; it refuses 58-85% of questions asked of
# documents about something else.
ANSWER_MARGIN = 0.009
BACKGROUND_TOP = 3
# Beyond qa/ann.py's EXACT_MAX passages (where its index turns approximate, and the
# store reads it with the rest of the index), only FAISS's nearest passages (and
# BM25's best) are re-scored, instead of every passage.
DENSE_CANDIDATES = 200
LEXICAL_CANDIDATES = 50


@dataclass(frozen=True)
class RetrievalConfig:
    """How the signals are combined into one ranking score.

    ``sentence_weight`` mixes the passage's best single sentence into its score
    (a passage is as good as the sentence that answers); ``lexical_weight`` adds
    BM25, normalised to the best passage's and scaled by the share of the
    question's terms found in the corpus, so it fades for cross-lingual questions.
    ``answer_margin`` and ``answer_floor`` decide whether the best passage answers at
    all (:func:`answers`). The defaults come from ``bench/tune.py`` on the valid splits.
    """

    sentence_weight: float = 0.3
    lexical_weight: float = 0.05
    answer_margin: float = ANSWER_MARGIN
    # The best passage's evidence (rank_passages) must also reach this floor to count
    # as an answer. It exists for models whose cosines are calibrated: EmbeddingGemma
    # scores questions about something else mostly under 0.3 against any text, whatever
    # the background says (bench/tune_refusal.py). The default never binds (today's e5
    # behaviour).
    answer_floor: float = -math.inf
    # The sentence weight of the evidence judged for "no answer" (margin and floor),
    # when it should differ from the ranking's: a passage that answers in one sentence
    # among unrelated ones has a diluted passage cosine, so EmbeddingGemma refuses
    # better judging by the best sentence, while it ranks as well or better by the
    # passage (bench/tune_refusal.py). None: the ranking's weight (e5 today).
    evidence_sentence_weight: float | None = None


# Each model's own weights, from the same tuning on the valid splits (RetrievalConfig()'s
# defaults are e5-small's). EmbeddingGemma ranks best by its passage vectors alone, with
# a little more BM25; it refuses best judging by the best sentence (0.7) against a floor
# and a margin over the background (bench/results/gemma_tuning.md).
MODEL_CONFIGS: dict[str, RetrievalConfig] = {
    GEMMA_MODEL: RetrievalConfig(sentence_weight=0.0, lexical_weight=0.1, answer_margin=0.100,
                                 answer_floor=0.285, evidence_sentence_weight=0.7),
}


def config_for_model(name: str) -> RetrievalConfig:
    """Return the ranking weights tuned for the model called ``name`` (e5-small's for any
    model without its own): weights tuned for one model's scores mislead with another's."""
    return MODEL_CONFIGS.get(name, RetrievalConfig())


def best_sentence_scores(query: np.ndarray, sentence_vectors: np.ndarray, owner: np.ndarray, n_passages: int) -> np.ndarray:
    """Return, for each passage, the best cosine of ``query`` with one of its sentences.

    ``owner[i]`` is the passage of sentence row ``i``, in ascending order (sentences
    are stored passage by passage). Passages without sentences get -1.
    """
    best = np.full(n_passages, -1.0, dtype=np.float32)
    if sentence_vectors.shape[0]:
        scores = sentence_vectors @ query
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        best[owner[starts]] = np.maximum.reduceat(scores, starts)
    return best


def rank_passages(
    query: np.ndarray,
    passage_vectors: np.ndarray,
    sentence_vectors: np.ndarray,
    sentence_owner: np.ndarray,
    lexicon: "Lexicon | None",
    query_terms: Sequence[str],
    config: RetrievalConfig,
    k: int,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Rank passages for one question by dense, best-sentence and lexical evidence.

    Takes the unit query vector, the passages' and sentences' unit vectors (rows),
    which passage each sentence belongs to (ascending), the corpus lexicon (or None)
    with the question's terms, the weights, how many passages to return, and
    optionally the passage ids to consider (on a large corpus, the nearest
    neighbours found by FAISS; default: every passage). Returns the indices of the
    ``k`` best passages, their combined scores, and the semantic evidence of the best
    one (dense and sentence scores only, comparable with background scores, for the
    no-answer judgement; mixed with ``config.evidence_sentence_weight`` when set).
    """
    n = passage_vectors.shape[0]
    rows = np.arange(n) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    rows = rows[(rows >= 0) & (rows < n)]
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), float("-inf")
    dense = np.asarray(passage_vectors[rows] if candidates is not None else passage_vectors) @ query
    semantic = dense
    if config.sentence_weight:
        if candidates is None:
            sentence = best_sentence_scores(query, sentence_vectors, sentence_owner, n)
        else:
            first = np.searchsorted(sentence_owner, rows, side="left")
            last = np.searchsorted(sentence_owner, rows, side="right")
            picked = np.concatenate([np.arange(a, b) for a, b in zip(first, last)]) if rows.size else np.zeros(0, int)
            local_owner = np.repeat(np.arange(rows.size), last - first)
            sentence = best_sentence_scores(query, np.asarray(sentence_vectors[picked]), local_owner, rows.size)
        sentence = np.where(sentence > -1.0, sentence, dense)
        semantic = (1 - config.sentence_weight) * dense + config.sentence_weight * sentence
    combined = semantic
    if config.lexical_weight and lexicon is not None and query_terms:
        lexical = lexicon.scores(query_terms)
        top = float(lexical.max()) if lexical.size else 0.0
        if top > 0:
            combined = semantic + config.lexical_weight * lexicon.coverage(query_terms) * lexical[rows] / top
    k = min(k, rows.size)
    order = np.argpartition(-combined, k - 1)[:k]
    order = order[np.argsort(-combined[order], kind="stable")]
    evidence = float(semantic[order[0]])
    weight = config.evidence_sentence_weight
    if weight is not None and weight != config.sentence_weight:
        evidence = _evidence(query, float(dense[order[0]]), int(rows[order[0]]), sentence_vectors, sentence_owner, weight)
    return rows[order], combined[order], evidence


def _evidence(query: np.ndarray, dense: float, passage: int, sentence_vectors: np.ndarray,
              sentence_owner: np.ndarray, weight: float) -> float:
    """Return the best passage's evidence with its own sentence weight: ``dense`` (the
    passage's cosine) mixed with its best sentence's cosine (``dense`` when it has none)."""
    first, last = np.searchsorted(sentence_owner, [passage, passage + 1], side="left")
    sentence = float(np.max(np.asarray(sentence_vectors[first:last]) @ query)) if last > first else dense
    return (1 - weight) * dense + weight * sentence


class QuestionError(Exception):
    """The question can't be asked; the message is one line for the user."""


@dataclass(frozen=True)
class RetrievedPassage:
    """A passage with its score for the question.

    ``highlight`` is the ``(start, end)`` of the sentence that best answers the
    question, as offsets within ``passage.text``.
    """

    passage: Passage
    score: float
    highlight: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        """Return the passage as the JSON contract's passage object."""
        p = self.passage
        out = {"text": p.text, "score": round(self.score, 6), "source": p.source, "start": p.start, "end": p.end}
        if p.line:
            out["line"] = p.line
        if p.page:
            out["page"] = p.page
        if self.highlight:
            out["highlight"] = {"start": self.highlight[0], "end": self.highlight[1]}
        return out


@dataclass
class Answer:
    """The outcome of one question: ranked passages and whether they answer it.

    ``margin`` is the best score minus the question's background level; ``found``
    says whether the best passage answers (:func:`answers`: the margin, and the
    score's floor). ``written`` is an answer a reader wrote from the
    passages (:mod:`qa.reader`); None with today's reader, whose answer is the best
    passage itself.
    """

    question: str
    found: bool
    passages: list[RetrievedPassage]
    margin: float
    context: str | None = None
    truncated: bool = False
    written: str | None = None

    def to_dict(self) -> dict:
        """Return the answer as the ``qa ask --json`` object."""
        return {
            "question": self.question,
            "found": self.found,
            "margin": round(self.margin, 6) if math.isfinite(self.margin) else None,  # no passage: no margin
            "passages": [p.to_dict() for p in self.passages],
            **({"context": self.context} if self.context else {}),
            **({"truncated": True} if self.truncated else {}),
            **({"answer": self.written} if self.written is not None else {}),
        }


def clean_question(question: str) -> str:
    """Return the question ready for the model, or raise :class:`QuestionError` if it
    is empty or has no word (a letter or digit in any script: "?" or "..." asks nothing,
    and would only be answered with whatever passage happens to score highest).

    Bytes that were not valid UTF-8 (which Python hands over as lone surrogates) become
    "?", and control characters such as NUL become spaces: the model's engine takes
    C strings.
    """
    question = question.encode("utf-8", "replace").decode("utf-8")
    question = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in question)
    cleaned = normalize_for_model(question)
    if not cleaned:
        raise QuestionError("the question is empty")
    if not any(ch.isalnum() for ch in cleaned):
        raise QuestionError("the question has no words: ask it in words")
    return cleaned


def answers(evidence: float, background: float, config: RetrievalConfig) -> bool:
    """Return whether the best passage answers the question.

    Takes the best passage's semantic evidence (from :func:`rank_passages`), the
    question's :func:`background_level` and the config. It answers when the evidence
    beats the background by ``answer_margin`` and reaches ``answer_floor``: the
    margin alone lets through questions that score low against everything, the
    background included.
    """
    return evidence - background >= config.answer_margin and evidence >= config.answer_floor


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

    def __init__(self, snapshot: Snapshot, embedder: Embedder, config: RetrievalConfig | None = None):
        from qa.lexical import Lexicon

        self.snapshot = snapshot
        self.embedder = embedder
        self.config = config or config_for_model(embedder.name)
        content = snapshot.content
        self._lexicon = Lexicon.from_arrays(content.lexicon) if content.lexicon else None
        counts = [len(spans) for spans in content.sentence_spans]
        self._sentence_owner = np.repeat(np.arange(len(counts)), counts)
        self._sentence_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def closest_passages(self, query: np.ndarray, k: int, query_terms: Sequence[str] = (),
                         highlight_query: np.ndarray | None = None) -> tuple[list[RetrievedPassage], float]:
        """Return the ``k`` best passages for ``query``, best first, and the evidence score.

        See :func:`rank_passages`; ``query_terms`` feed the lexical signal. Each passage's
        highlighted sentence is the one closest to ``highlight_query`` (default ``query``).
        """
        highlight_query = query if highlight_query is None else highlight_query
        content = self.snapshot.content
        order, scores, evidence = rank_passages(
            query, content.vectors, content.sentence_vectors, self._sentence_owner,
            self._lexicon, query_terms, self.config, k, self.candidates(query, k, query_terms),
        )
        passages = [
            RetrievedPassage(content.passages[int(i)], float(s), self.best_sentence(int(i), highlight_query))
            for i, s in zip(order, scores)
        ]
        return passages, evidence

    def candidates(self, query: np.ndarray, k: int, query_terms: Sequence[str] = ()) -> np.ndarray | None:
        """Return the passages worth re-scoring for ``query`` on a large index, or None for all.

        Up to ``qa.ann.EXACT_MAX`` passages every one is scored exactly. Beyond, the
        candidates are FAISS's nearest passages (``qa/ann.py``: recall@10 >= 0.95 against
        exact search) and the best BM25 passages, so a rare name the vectors blur is
        still found.
        """
        from qa import ann

        n = len(self.snapshot.passages)
        if n <= ann.EXACT_MAX:
            return None
        _, ids = self.snapshot.search(query[None, :], max(DENSE_CANDIDATES, 4 * k))
        found = [ids[0]]
        if self._lexicon is not None and query_terms and self.config.lexical_weight:
            lexical = self._lexicon.scores(query_terms)
            top = min(LEXICAL_CANDIDATES, n)
            best = np.argpartition(-lexical, top - 1)[:top]
            found.append(best[lexical[best] > 0])
        return np.concatenate(found)

    def best_sentence(self, passage_id: int, query: np.ndarray) -> tuple[int, int] | None:
        """Return the span, within the passage's text, of its sentence closest to ``query``."""
        content = self.snapshot.content
        spans = content.sentence_spans[passage_id]
        if not spans:
            return None
        first = self._sentence_start[passage_id]
        scores = content.sentence_vectors[first : first + len(spans)] @ query
        start, end = spans[int(np.argmax(scores))]
        offset = content.passages[passage_id].start
        return start - offset, end - offset

    def ask(self, question: str, top_k: int = 1, context: str | None = None) -> Answer:
        """Answer ``question`` with the ``top_k`` best passages and a found/not-found verdict.

        ``context`` (an earlier question of the conversation) is added after the
        question for retrieval, for follow-up questions that depend on it; when the two
        are longer than the model reads, the context is what gets cut. The sentence
        highlighted is still the one closest to the question itself: the topic finds
        the passage, the follow-up says what in it is asked about.
        """
        from qa.lexical import terms

        cleaned = clean_question(question)
        try:
            context = clean_question(context) if context else None
        except QuestionError:
            context = None
        text = f"{cleaned} {context}" if context else cleaned
        truncated = self.embedder.count_tokens(cleaned) > self.embedder.max_tokens
        if context:
            query, own = self.embedder.embed_queries([text, cleaned])
        else:
            query = own = self.embedder.embed_queries([text])[0]
        passages, evidence = self.closest_passages(query, max(1, top_k), terms(text), highlight_query=own)
        level = background_level(query, self.snapshot.background)
        margin = evidence - level
        found = bool(passages) and answers(evidence, level, self.config)
        return Answer(question, found, passages, margin, context, truncated)
