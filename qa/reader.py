"""Readers, and the one way from a question to its :class:`~qa.retriever.Answer`.

Retrieval ranks passages and judges whether they answer (:mod:`qa.retriever`); a
*reader* then makes the answer the user sees out of them. Today's reader is the
identity: the answer is the best passage, its best sentence highlighted, as DrQA's
pipeline shows it. A reader that writes an answer from the passages (an extractive QA
model, or a local LLM) goes behind this seam: it implements :class:`Reader`, sets
``Answer.written``, and is registered with :func:`register_reader`; ``qa ask``,
``qa chat``, ``qa eval`` and the server all get it through :func:`answer_question`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from qa.followup import Conversation
    from qa.retriever import Answer, Retriever

DEFAULT_READER = "passage"


class Reader(Protocol):
    """Makes the answer out of a question's ranked passages and verdict."""

    name: str

    def read(self, answer: Answer) -> Answer:
        """Return the answer to show: ``answer`` itself, or a copy with ``written`` set."""


class PassageReader:
    """The identity reader: the best passage, highlighted, is the answer."""

    name = DEFAULT_READER

    def read(self, answer: Answer) -> Answer:
        """Return ``answer`` unchanged: its passages, highlight and verdict are the answer."""
        return answer


_READERS: dict[str, Callable[[], Reader]] = {DEFAULT_READER: PassageReader}


def register_reader(name: str, factory: Callable[[], Reader]) -> None:
    """Make the reader ``factory()`` available as ``name``."""
    _READERS[name] = factory


def load_reader(name: str | None = None) -> Reader:
    """Return the reader called ``name`` (None: the default, :class:`PassageReader`).

    Raises KeyError naming the known readers for an unknown name.
    """
    name = name or DEFAULT_READER
    if name not in _READERS:
        raise KeyError(f"unknown reader {name!r} (known: {', '.join(sorted(_READERS))})")
    return _READERS[name]()


def answer_question(retriever: Retriever, question: str, top_k: int = 1,
                    conversation: Conversation | None = None, reader: Reader | None = None) -> Answer:
    """Answer ``question``: retrieve and judge its ``top_k`` passages, then read them.

    With a ``conversation``, a follow-up question is read with the conversation's topic
    (:meth:`qa.followup.Conversation.ask`), and an answered one may become its topic.
    Raises :class:`qa.retriever.QuestionError` for a question without words. This is
    the one function every front end calls, so that a new reader reaches them all.
    """
    if conversation is not None:
        answer = conversation.ask(retriever, question, top_k)
    else:
        answer = retriever.ask(question, top_k=top_k)
    return (reader or load_reader()).read(answer)
