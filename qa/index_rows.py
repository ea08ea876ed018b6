"""A document's share of an index: its manifest record, passages, sentences and vectors.

An update keeps the rows of unchanged documents (:class:`DocumentRows`, views into
the previous index) and cuts changed ones into passages (:class:`Chunked`, with no
vectors yet); both carry the document's manifest record.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qa.documents import ChunkSettings, Document, Passage, chunk_document, split_sentences
from qa.embedder import Embedder
from qa.freshness import chunk_settings_for
from qa.manifest import DocumentRecord, Manifest
from qa.roots import BUNDLED_ROOT, document_key, record_key
from qa.index_report import PassageProgress
from qa.store import Snapshot

CHUNK_PROGRESS_CHARS = 1 << 20
"""Documents this long get a bar while they are cut into passages."""


def passage_positions(document: Document, passages: list[Passage]) -> list[Passage]:
    """Return ``passages`` with where a person finds them: line for text, page for PDF.

    Lines are 1-based lines of the file itself (a text document's text is the file's
    content), pages 1-based PDF pages; other formats get neither.
    """
    if document.kind == "pdf" and document.pages:
        return [replace(p, page=bisect_right(document.pages, p.start)) for p in passages]
    if document.kind != "text":
        return passages
    newlines = [m.start() for m in re.finditer("\n", document.text)]
    return [replace(p, line=bisect_right(newlines, p.start - 1) + 1) for p in passages]


@dataclass
class DocumentRows:
    """One document's share of an index: its manifest record, passages and vectors."""

    record: DocumentRecord
    passages: list[Passage]
    sentence_spans: list[list[tuple[int, int]]]
    vectors: np.ndarray
    sentence_vectors: np.ndarray


def rows_by_document(snapshot: Snapshot) -> dict[str, DocumentRows]:
    """Split a loaded index into its documents' rows, by :func:`document_key` (views, not copies)."""
    content = snapshot.content
    out: dict[str, DocumentRows] = {}
    first = first_sentence = 0
    for record in snapshot.manifest.documents:
        count = record.passages
        spans = content.sentence_spans[first : first + count]
        n_sentences = sum(map(len, spans))
        out[record_key(record)] = DocumentRows(
            record,
            content.passages[first : first + count],
            spans,
            content.vectors[first : first + count],
            content.sentence_vectors[first_sentence : first_sentence + n_sentences],
        )
        first += count
        first_sentence += n_sentences
    return out


def expected_chunking(manifest: Manifest) -> dict | None:
    """Return the chunk settings an index of this model should have been cut with (None
    when the manifest doesn't record the model's window): else it is chunked again."""
    max_tokens = manifest.model.max_tokens if manifest.model else None
    if max_tokens is None:
        return None
    return ChunkSettings(max_tokens=min(ChunkSettings().max_tokens, max_tokens)).to_dict()


def restat(rows: DocumentRows, path: Path, observed: tuple[int, int] | None = None) -> DocumentRows:
    """Return ``rows`` with the file's size and modification time: ``observed`` (as
    seen before the file was hashed) or else as they are now.

    Recorded for a file touched but unchanged, or changed but unreadable (its indexed
    version kept), so that questions don't find it "changed" and update the index
    every time; ``qa index`` always compares content hashes.
    """
    if observed is None:
        try:
            stat = path.stat()
        except OSError:
            return rows
        observed = (stat.st_size, stat.st_mtime_ns)
    if observed == (rows.record.size, rows.record.mtime_ns):
        return rows
    return replace(rows, record=replace(rows.record, size=observed[0], mtime_ns=observed[1]))


def _document_record(document: Document, passages: int, title: str | None) -> DocumentRecord:
    """Return a document's manifest record. Its size and modification time are those
    seen before its bytes were read (``document.observed``): a time taken now, after
    chunking, could be an edit's, paired with the hash of the text before it."""
    path = Path(document.source)
    observed = document.observed
    if observed is None:
        try:
            stat = path.stat()
            observed = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            observed = (None, None)
    return DocumentRecord(
        source=document.source,
        bundled=document_key(path) == BUNDLED_ROOT,
        kind=document.kind,
        sha256=document.sha256,
        size=observed[0],
        mtime_ns=observed[1],
        passages=passages,
        title=title,
        note=document.note or None,
    )


@dataclass
class Chunked:
    """A document cut into passages, without its full text: what embedding needs."""

    record: DocumentRecord
    passages: list[Passage]
    sentence_spans: list[list[tuple[int, int]]]


def chunk_for_index(document: Document, embedder: Embedder, progress: PassageProgress | None = None) -> Chunked:
    """Cut ``document`` into passages (with positions) and sentences, for ``embedder``;
    by its tokens' offsets when it gives them (``token_offsets``: see :mod:`qa.token_packing`),
    with a "cutting into passages" bar through ``progress`` for a document of a megabyte or more."""
    settings = chunk_settings_for(embedder)
    shown = progress if progress is not None and len(document.text) >= CHUNK_PROGRESS_CHARS else None
    passages = passage_positions(document, chunk_document(
        document, embedder.count_tokens, settings, token_offsets=getattr(embedder, "token_offsets", None),
        progress=(lambda done, total: shown(done >> 10, total >> 10, "cutting into passages (KB)")) if shown else None))
    spans = [split_sentences(document.text, p.start, p.end) for p in passages]
    return Chunked(_document_record(document, len(passages), passages[0].title if passages else None), passages, spans)
