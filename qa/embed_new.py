"""The embedding of an update's passages: only texts no index or journal has a vector for.

:func:`vectors_of` lays out the arrays the new generation is made of, copies the
vectors of unchanged documents, reuses those of untouched passages of edited
documents and of an interrupted run's journal, and embeds the rest in batches (here,
or on Ray actors), each journalled before the next, so that a rerun resumes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qa.documents import ChunkSettings, Passage, normalize_for_model, passage_model_text
from qa.freshness import chunk_settings_for
from qa.index_report import IndexingError, IndexReport, Notify, PassageProgress, RayOptions
from qa.index_rows import Chunked, DocumentRows
from qa.manifest import Manifest
from qa.journal import EmbeddingJournal, journal_dir, text_key
from qa.roots import document_key
from qa.update_model import UpdateModel

EMBED_BATCH = 256


class VectorLayout:
    """The passage and sentence arrays of a new generation, and which rows still need
    a vector: each text (by :func:`qa.journal.text_key`) maps to the rows it fills."""

    def __init__(self, documents: list[DocumentRows | Chunked], dim: int, settings: ChunkSettings | None):
        self.n_passages = sum(len(d.passages) for d in documents)
        self.n_sentences = sum(len(spans) for d in documents for spans in d.sentence_spans)
        self.vectors = np.empty((self.n_passages, dim), dtype=np.float32)
        self.sentence_vectors = np.empty((self.n_sentences, dim), dtype=np.float32)
        self.targets: dict[bytes, list[tuple[np.ndarray, int]]] = {}
        self.texts: dict[bytes, str] = {}
        row = sentence_row = 0
        for document in documents:
            count, sentences = len(document.passages), sum(map(len, document.sentence_spans))
            if isinstance(document, DocumentRows):
                self.vectors[row : row + count] = document.vectors
                self.sentence_vectors[sentence_row : sentence_row + sentences] = document.sentence_vectors
            else:
                self._want(document, settings, row, sentence_row)
            row += count
            sentence_row += sentences

    def _want(self, document: Chunked, settings: ChunkSettings | None, row: int, sentence_row: int) -> None:
        """Record the rows of a chunked document's passages and sentences as needing vectors."""
        for i, (passage, spans) in enumerate(zip(document.passages, document.sentence_spans)):
            self._target(passage_model_text(passage, settings), self.vectors, row + i)
            for sentence in sentence_texts(passage, spans):
                self._target(sentence, self.sentence_vectors, sentence_row)
                sentence_row += 1

    def _target(self, text: str, array: np.ndarray, index: int) -> None:
        key = text_key(text)
        self.texts.setdefault(key, text)
        self.targets.setdefault(key, []).append((array, index))

    def place(self, key: bytes, vector: np.ndarray) -> bool:
        """Write ``vector`` into every row that wants the text ``key``; return whether any did."""
        found = self.targets.pop(key, None)
        for array, index in found or ():
            array[index] = vector
        return found is not None


def sentence_texts(passage: Passage, spans: list[tuple[int, int]]) -> list[str]:
    """Return the texts embedded for a passage's sentences (``spans`` are document offsets)."""
    return [normalize_for_model(passage.text[s - passage.start : e - passage.start]) for s, e in spans]


def vectors_of(index_dir: Path, documents: list[DocumentRows | Chunked], old_rows: dict[str, DocumentRows],
               model: UpdateModel, manifest: Manifest, dim: int, notify: Notify, progress: PassageProgress | None,
               report: IndexReport, ray: RayOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the passage and sentence vectors of ``documents``, in order, embedding only new texts.

    Vectors of kept documents are copied from the previous index; a text seen before
    (in an edited document's old version, or in an interrupted run's journal) is
    reused; the rest is embedded in batches, each journalled before the next (by the
    model here, or by Ray actors when ``ray`` is given). Every vector is written once,
    straight into the arrays the index is made of.
    """
    settings = chunk_settings_for(model.embedder) if any(isinstance(d, Chunked) for d in documents) else None
    layout = VectorLayout(documents, dim, settings)
    if not layout.targets:
        return layout.vectors, layout.sentence_vectors
    _reuse_old_versions(layout, documents, old_rows, settings)
    journal = EmbeddingJournal(journal_dir(index_dir, model.name, model.fingerprint(manifest)), dim)
    for keys, batch in journal.batches():
        report.resumed += sum(layout.place(key, vector) for key, vector in zip(keys, batch))
    missing = sorted(layout.targets, key=lambda k: -len(layout.texts[k]))  # longest first: batches pad alike
    notify(
        f"{sum(isinstance(d, Chunked) for d in documents)} document(s) to embed: {len(missing)} new texts"
        + (f", {report.resumed} more already embedded by an interrupted run" if report.resumed else "")
        + f" (the index will hold {layout.n_passages} passages, {layout.n_sentences} sentences)"
    )
    if ray is not None:
        _embed_on_ray(missing, layout, model.name, ray, journal, progress, report)
    else:
        _embed_here(missing, layout, model, journal, progress, report)
    return layout.vectors, layout.sentence_vectors


def _reuse_old_versions(layout: VectorLayout, documents: list[DocumentRows | Chunked],
                        old_rows: dict[str, DocumentRows], settings: ChunkSettings | None) -> None:
    """Place the vectors of an edited document's untouched passages and sentences."""
    for document in documents:
        old = old_rows.get(document_key(document.record.source)) if isinstance(document, Chunked) else None
        if old is None:
            continue
        old_sentence = 0
        for passage, spans, vector in zip(old.passages, old.sentence_spans, old.vectors):
            layout.place(text_key(passage_model_text(passage, settings)), vector)
            for sentence in sentence_texts(passage, spans):
                layout.place(text_key(sentence), old.sentence_vectors[old_sentence])
                old_sentence += 1


def _embed_here(missing: list[bytes], layout: VectorLayout, model: UpdateModel, journal: EmbeddingJournal,
                progress: PassageProgress | None, report: IndexReport) -> None:
    """Embed the ``missing`` texts with the model in this process, batch by batch."""
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start : start + EMBED_BATCH]

        def within(done: int, _total: int, start: int = start) -> None:
            if progress:
                progress(start + done, len(missing))

        embedded = model.embedder.embed_passages([layout.texts[k] for k in batch], progress=within)
        journal.add(batch, embedded)
        for key, vector in zip(batch, embedded):
            layout.place(key, vector)
        report.embedded += len(batch)
        if progress:
            progress(start + len(batch), len(missing))


def _embed_on_ray(missing: list[bytes], layout: VectorLayout, model_name: str, ray: RayOptions,
                  journal: EmbeddingJournal, progress: PassageProgress | None, report: IndexReport) -> None:
    """Embed the ``missing`` texts on Ray, journalling and placing each batch as it comes back."""
    from qa.ray_embed import RayUnavailable, embed_on_ray

    try:
        for positions, embedded in embed_on_ray([layout.texts[k] for k in missing], model_name, ray.address,
                                                workers=ray.workers, batch_size=EMBED_BATCH):
            keys = [missing[i] for i in positions]
            journal.add(keys, embedded)
            for key, vector in zip(keys, embedded):
                layout.place(key, vector)
            report.embedded += len(keys)
            if progress:
                progress(report.embedded, len(missing))
    except RayUnavailable as exc:
        raise IndexingError(str(exc)) from None
