"""The index on disk: FAISS vectors, passages and a manifest, written atomically.

This module is the store's public face; the work is done in four modules, one job
each: :mod:`qa.index_dir` (the layout, ``CURRENT``, the lock, the errors),
:mod:`qa.index_read` (verify and load a generation), :mod:`qa.index_write` (write a
generation and swap ``CURRENT``) and :mod:`qa.recovery` (the newest trusted
generation of a damaged index).

Layout of an index directory::

    CURRENT              "<generation> <sha256 of its manifest>", replaced atomically
    .lock                taken by writers, so that two builds never interleave
    gen-<id>/            one complete, immutable generation of the index
        manifest.json    format version, model, chunking, documents, file checksums
        manifest.sha256  the manifest's own checksum, to trust it when it is no longer
                         current (recovering the document list of a damaged index)
        vectors.faiss    FAISS inner-product index of the passage vectors (qa/ann.py picks
                         exact or approximate by size; large files are memory-mapped), or
                         whatever another vector store keeps here (qa/vectorstore.py); the
                         manifest's "vectors" record says which
        vectors.npy      the passage vectors themselves, unit rows, for exact re-scoring
        passages.jsonl   one passage per line: document number, offsets, text, sentences
        sentences.npy    one vector per sentence of every passage, in passage order
        lexicon.npz      BM25 statistics of the passages (plain arrays)
        background.npy   vectors of unrelated text, the null model for "no answer"

A build writes a new generation beside the old one and then swaps ``CURRENT``, so a
reader (or a crash at any moment) only ever sees the old index or the new one. Every
file is checked against the checksums in the manifest, and the manifest against
``CURRENT``, before it is used. When ``CURRENT`` or the current manifest is damaged,
:func:`newest_intact_generation` finds the newest generation whose manifest can still
be trusted, so that the library's document list is not lost. Nothing loaded from an
index can execute code: JSON, FAISS's own format, and ``.npy`` with pickles disabled.
"""

from __future__ import annotations

from qa.index_dir import (
    BACKGROUND, CORE_FILES, CURRENT, DATA_FILES, FAISS_RECORD, FORMAT_VERSION, GENERATIONS_KEPT,
    LEXICON, LOCK, MANIFEST, MANIFEST_SHA, MANIFEST_SIG, MAX_MANIFEST_BYTES, MAX_SMALL_FILE_BYTES,
    MMAP_MIN_BYTES, PASSAGES, SENTENCES, VECTORS, VECTORS_NPY, IndexBusy, IndexCorrupt,
    IndexDiskFull, IndexMissing, IndexOldFormat, IndexReadOnly, READ_ONLY_ERRNOS, StoreError,
    ensure_writable, generations, is_disk_full, read_bounded, writer_lock,
)
from qa.index_read import (
    IndexContent, Snapshot, generation_signed, is_current, read_index, read_library,
)
from qa.index_write import make_current, remove_leftovers, write_index
from qa.recovery import IntactGeneration, newest_intact_generation

__all__ = [
    "BACKGROUND",
    "CORE_FILES",
    "CURRENT",
    "DATA_FILES",
    "ensure_writable",
    "FAISS_RECORD",
    "FORMAT_VERSION",
    "generation_signed",
    "generations",
    "is_disk_full",
    "GENERATIONS_KEPT",
    "IndexBusy",
    "IndexContent",
    "IndexCorrupt",
    "IndexDiskFull",
    "IndexMissing",
    "IndexOldFormat",
    "IndexReadOnly",
    "IntactGeneration",
    "is_current",
    "LEXICON",
    "LOCK",
    "make_current",
    "MANIFEST",
    "MANIFEST_SHA",
    "MANIFEST_SIG",
    "MAX_MANIFEST_BYTES",
    "MAX_SMALL_FILE_BYTES",
    "MMAP_MIN_BYTES",
    "newest_intact_generation",
    "PASSAGES",
    "read_bounded",
    "read_index",
    "READ_ONLY_ERRNOS",
    "read_library",
    "remove_leftovers",
    "SENTENCES",
    "Snapshot",
    "StoreError",
    "VECTORS",
    "VECTORS_NPY",
    "write_index",
    "writer_lock",
]
