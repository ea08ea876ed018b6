"""The bot as a long-lived, thread-safe service: what ``qa serve`` answers requests with.

``qa ask`` opens the index, answers once and exits; a server keeps the model and the
index loaded and answers many requests at once, for many conversations. This module
does that without any web framework, so it is tested on its own:

- before every question it checks the index as ``qa ask`` does (changed, deleted or
  new documents are indexed first) and picks up a generation another process wrote
  (``qa index`` run beside the server);
- those updates happen one at a time (a lock here, and the index's writer lock
  against other processes), and each request answers from one retriever over one
  complete snapshot, so no request ever sees a half-updated index;
- conversations (follow-up questions, as in ``qa chat``) are kept by an id the client
  chooses, the least recently used dropped beyond :data:`MAX_CONVERSATIONS`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qa.followup import Conversation
from qa.reader import load_reader
from qa.retriever import Answer, Retriever

Notify = Callable[[str], None]
# Conversations kept at once; the least recently used is forgotten first.
MAX_CONVERSATIONS = 1000


class ServiceUnavailable(Exception):
    """The index can't be used right now (damaged, or removed); the message is one line."""


@dataclass(frozen=True)
class Health:
    """What ``GET /api/health`` reports: the index generation in use, its size, the model."""

    generation: str
    documents: int
    passages: int
    model: str

    def to_dict(self) -> dict:
        """Return the health report as a JSON-ready dict (``status`` is always ``"ok"``)."""
        return {"status": "ok", "generation": self.generation, "documents": self.documents,
                "passages": self.passages, "model": self.model}


class Conversations:
    """Conversations by client-chosen id, at most ``limit`` of them (least recently used go first).

    Each conversation has its own lock, so that two questions of one conversation (two
    tabs of the page) are answered in order while other conversations go on.
    """

    def __init__(self, limit: int = MAX_CONVERSATIONS):
        self.limit = limit
        self._items: OrderedDict[str, tuple[Conversation, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conversation_id: str) -> tuple[Conversation, threading.Lock]:
        """Return the conversation called ``conversation_id`` with its lock, new if unknown."""
        with self._lock:
            item = self._items.pop(conversation_id, None) or (Conversation(), threading.Lock())
            self._items[conversation_id] = item
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
            return item

    def forget(self, conversation_id: str) -> bool:
        """Forget a conversation; return whether it was known."""
        with self._lock:
            return self._items.pop(conversation_id, None) is not None

    def __len__(self) -> int:
        return len(self._items)


def current_generation(index_dir: Path) -> str | None:
    """Return the name of the generation ``CURRENT`` points to, or None when it can't be read.

    A cheap check (one small file) for whether another process wrote the index since
    the server loaded it; reading and verifying the generation is left to ``read_index``.
    """
    from qa.store import CURRENT

    try:
        words = (index_dir / CURRENT).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0] if words else None


class AnswerService:
    """Answers questions from one index for many concurrent requests.

    Takes the index directory and three callables: ``open_retriever()`` gives a
    retriever over a fresh index (:func:`qa.pipeline.open_retriever`; also used again
    when another process rebuilt the index with another model), ``keep_fresh(r)``
    returns ``r`` or one over an index updated because documents changed
    (:func:`qa.pipeline.keep_fresh`), and ``reload(r)`` returns a retriever over the
    index's current generation with ``r``'s model. The index is opened at once, so that
    a broken index is an error at start, not at the first request.
    """

    def __init__(self, index_dir: Path, open_retriever: Callable[[], Retriever],
                 keep_fresh: Callable[[Retriever], Retriever], reload: Callable[[Retriever], Retriever]):
        self.index_dir = index_dir
        self._open = open_retriever
        self._keep_fresh = keep_fresh
        self._reload = reload
        self._retriever = open_retriever()
        # One refresh at a time (each may update the index); one question at a time
        # through the model, whose engine is not documented as thread-safe.
        self._refresh_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.conversations = Conversations()
        self.reader = load_reader()  # qa.reader's default, as for ask and chat

    @property
    def model(self) -> str:
        """The name of the embedding model answering questions."""
        return self._retriever.embedder.name

    def retriever(self, update: bool = True) -> Retriever:
        """Return a retriever over the index as it is now on disk.

        Picks up a generation another process wrote; with ``update``, also brings the
        index up to date with its documents first, as ``qa ask`` does. Raises
        :class:`ServiceUnavailable` when the index can't be read.
        """
        from qa.pipeline import PipelineError
        from qa.store import StoreError

        with self._refresh_lock:
            retriever = self._retriever
            try:
                if current_generation(self.index_dir) != retriever.snapshot.directory.name:
                    retriever = self._reload(retriever)
                    built_with = retriever.snapshot.manifest.model_name
                    if built_with and built_with != retriever.embedder.name:
                        retriever = self._open()  # rebuilt with another model: load that one
                if update:
                    retriever = self._keep_fresh(retriever)
            except (PipelineError, StoreError) as exc:
                raise ServiceUnavailable(str(exc)) from None
            self._retriever = retriever
            return retriever

    def ask(self, question: str, top_k: int = 1, conversation: str | None = None) -> Answer:
        """Answer ``question`` with its ``top_k`` best passages, as ``qa ask`` would.

        With a ``conversation`` id, the question may be a follow-up of that
        conversation's earlier questions, as in ``qa chat``. The answer is made by
        :func:`qa.reader.answer_question`, the one function ``ask`` and ``chat`` use. Raises
        :class:`qa.retriever.QuestionError` for a question without words and
        :class:`ServiceUnavailable` when the index can't be read.
        """
        from qa.reader import answer_question
        from qa.retriever import clean_question

        clean_question(question)  # a bad question is refused before any index work
        retriever = self.retriever()
        if conversation is None:
            with self._model_lock:
                return answer_question(retriever, question, top_k, reader=self.reader)
        state, order = self.conversations.get(conversation)
        with order, self._model_lock:
            return answer_question(retriever, question, top_k, state, reader=self.reader)

    def sources(self) -> list[dict]:
        """Return the indexed documents as ``qa sources --json`` lists them."""
        from qa.render import source_record

        documents = self.retriever(update=False).snapshot.manifest.documents
        return [source_record(record) for record in documents]

    def health(self) -> Health:
        """Return the generation in use, its document and passage counts, and the model."""
        retriever = self.retriever(update=False)
        snapshot = retriever.snapshot
        return Health(snapshot.directory.name, len(snapshot.manifest.documents),
                      len(snapshot.passages), retriever.embedder.name)
