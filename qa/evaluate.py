"""Measuring answer quality: Hit@1, Hit@5, MRR, and how well "no answer" works.

An evaluation set is JSONL, one ``{"question": str, "answers": [str, ...]}`` a line
(``"id"``, a string, optional). A retrieved passage is a hit when it contains one of the
answer strings; an empty ``answers`` list means the corpus cannot answer.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from qa.retriever import Answer, QuestionError, clean_question

RANKED = 20
# An evaluation set is read whole; these bound what a wrong file (/dev/zero, a log,
# a disk image) can cost before it is refused. The bundled sets are under 100 KB.
MAX_EVAL_BYTES = 64 * 1024 * 1024
MAX_EVAL_QUESTIONS = 100_000


class EvalSetError(Exception):
    """The evaluation file can't be used; the message is one line for the user."""


@dataclass(frozen=True)
class EvalItem:
    """One question of an evaluation set and the strings that mark a right answer."""

    question: str
    answers: tuple[str, ...]
    id: str | None = None


@dataclass(frozen=True)
class QuestionResult:
    """How one question fared: rank of the first hit (None: none in the top ranks)."""

    item: EvalItem
    rank: int | None
    found: bool


def read_eval_set(path: Path) -> list[EvalItem]:
    """Read a JSONL evaluation set, raising :class:`EvalSetError` on the first bad line.

    Takes the file's path (UTF-8, a byte order mark allowed) and returns its items in
    order. Every check happens here, so a bad line is reported with its number
    before any question is asked. A file of more than :data:`MAX_EVAL_BYTES`, or of
    more than :data:`MAX_EVAL_QUESTIONS` questions, is refused after reading at most
    that much: ``qa eval /dev/zero`` ends at once with a one-line error.
    """
    try:
        with open(path, "rb") as handle:  # a FIFO or /dev/stdin is a fair way to pass questions
            data = handle.read(MAX_EVAL_BYTES)
            if handle.read(1):
                raise EvalSetError(f"{path}: too large for an evaluation set "
                                   f"(more than {MAX_EVAL_BYTES // (1024 * 1024)} MB)")
        # split on "\n" only: str.splitlines also breaks at U+2028 and others, which
        # JSON allows unescaped inside strings
        lines = data.decode("utf-8-sig").split("\n")
    except FileNotFoundError:
        raise EvalSetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalSetError(f"{path} is a folder: give a JSONL file of questions") from None
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"{path}: cannot read as UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise EvalSetError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(items) == MAX_EVAL_QUESTIONS:
            raise EvalSetError(f"{path}: more than {MAX_EVAL_QUESTIONS:,} questions; split the set")
        try:
            items.append(_parse_item(line))
        except (ValueError, KeyError, RecursionError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else (str(exc).splitlines() or ["?"])[0]
            raise EvalSetError(f"{path}, line {number}: {reason}") from None
    if not items:
        raise EvalSetError(f"{path}: no questions")
    return items


def _parse_item(line: str) -> EvalItem:
    """Return the item of one JSONL line, raising ValueError or KeyError saying what is wrong."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError('expected a JSON object such as {"question": "...", "answers": ["..."]}')
    question, answers, item_id = row["question"], row["answers"], row.get("id")
    if not isinstance(question, str):
        raise ValueError('"question" must be a string')
    try:
        clean_question(question)  # the check the retriever makes, so the error can name the line
    except QuestionError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError('"answers" must be a list of non-empty strings')
    if item_id is not None and not isinstance(item_id, str):
        raise ValueError('"id" must be a string')
    return EvalItem(question, tuple(answers), item_id)


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def is_hit(passage_text: str, answers: Sequence[str]) -> bool:
    """Return True when the passage contains one of the answers (case and spacing folded)."""
    folded = _fold(passage_text)
    return any(_fold(answer) in folded for answer in answers)


def judge(item: EvalItem, answer: Answer) -> QuestionResult:
    """Score one answer against its evaluation item."""
    rank = None
    if item.answers:
        rank = next(
            (i for i, p in enumerate(answer.passages, start=1) if is_hit(p.passage.text, item.answers)), None
        )
    return QuestionResult(item, rank, answer.found)


def metrics(results: Sequence[QuestionResult]) -> dict:
    """Summarise results: Hit@1, Hit@5 and MRR over answerable questions; no-answer counts.

    Hit@1, Hit@5 and MRR are None when no question is answerable: there is nothing
    to measure, and 0.0 would read as total failure. ``no_answer_correct`` counts
    unanswerable questions answered "not found";
    ``false_refusals`` counts answerable questions wrongly answered "not found".
    """
    answerable = [r for r in results if r.item.answers]
    unanswerable = [r for r in results if not r.item.answers]
    n = len(answerable)

    def share(total: float) -> float | None:
        return round(total / n, 4) if n else None

    return {
        "hit@1": share(sum(r.rank == 1 for r in answerable)),
        "hit@5": share(sum(r.rank is not None and r.rank <= 5 for r in answerable)),
        "mrr": share(sum(1 / r.rank for r in answerable if r.rank)),
        "n_answerable": n,
        "n_unanswerable": len(unanswerable),
        "no_answer_correct": sum(not r.found for r in unanswerable),
        "false_refusals": sum(not r.found for r in answerable),
    }


def evaluate(ask: Callable[[str, int], Answer], items: Sequence[EvalItem]) -> list[QuestionResult]:
    """Ask every question (``ask(question, top_k)``) and judge the answers."""
    return [judge(item, ask(item.question, RANKED)) for item in items]
