"""Building an index from documents, and bringing it up to date: embedding only what changed.

:func:`update_index` is the one way an index is written from documents (``qa index``,
and ``qa ask`` / ``qa chat`` on a stale index). Under the writer lock it takes the
index to start from (:mod:`qa.previous_index`), plans the update
(:mod:`qa.update_plan`: roots, files, unchanged documents, the rest read and
chunked), embeds only the new texts (:mod:`qa.embed_new`) and writes the new
generation (:mod:`qa.new_generation`). Whether an index is stale is
:mod:`qa.freshness`'s question, not this module's.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from qa.embed_new import vectors_of
from qa.embedder import DEFAULT_MODEL, Embedder
from qa.freshness import chunk_settings_for, lexicon_reasons, recorded_probe
from qa.index_report import IndexingError, IndexReport, Notify, PassageProgress, RayOptions, UpdateRequest
from qa.index_rows import Chunked, DocumentRows, chunk_for_index, expected_chunking, rows_by_document
from qa.journal import journal_dir, remove_journals
from qa.lexical import TERMS_VERSION
from qa.new_generation import write_generation
from qa.manifest import CarriedLibrary, Manifest
from qa.previous_index import (
    damaged_index_message,
    foreign_index_message,
    previous_snapshot,
    rebuild_message,
)
from qa.store import Snapshot, is_current, remove_leftovers, writer_lock
from qa.update_model import UpdateModel
from qa.update_plan import UpdatePlan, passed_over, plan_update, skipped_record, store_backend

__all__ = [  # what callers and tests import from here
    "Chunked", "DocumentRows", "IndexReport", "IndexingError", "Notify", "PassageProgress", "RayOptions",
    "TERMS_VERSION", "build_index", "chunk_for_index", "chunk_settings_for", "damaged_index_message",
    "foreign_index_message", "rebuild_message", "rows_by_document", "skipped_record", "update_index",
]


def update_index(
    index_dir: Path,
    inputs: Sequence[str | Path] = (),
    *,
    model: str | None = None,
    embedder: Embedder | None = None,
    remove: Sequence[str | Path] = (),
    replace_all: bool = False,
    notify: Notify | None = None,
    progress: PassageProgress | None = None,
    lock_timeout: float = 600.0,
    skips_shown: bool = True,
    current: Snapshot | None = None,
    ray: RayOptions | None = None,
    store: str | None = None,
) -> IndexReport:
    """Bring the index in ``index_dir`` up to date with its documents, embedding only what changed.

    Takes the index directory; ``inputs``, files, directories and globs to add (they
    join the roots remembered from earlier runs, which are scanned again); the model
    name (None: the index's own, else the default) or an already loaded
    ``embedder``; paths to ``remove`` from the index; ``replace_all`` to index
    exactly ``inputs`` and drop the rest; callbacks for status lines and
    embedding progress; and whether the caller shows the user the files skipped
    (``skips_shown``: ``qa index`` does, ``ask`` and ``chat`` don't). The manifest
    records the skipped files shown, so that the next run can tell which are new
    (``report.skipped_before``). ``current`` is the snapshot the caller already read
    and verified (``qa ask`` on a stale index): while ``CURRENT`` still names its
    generation it is updated without reading and checksumming the index again. With
    ``ray``, the texts to embed are embedded by Ray actors (see :mod:`qa.ray_embed`)
    instead of in this process. ``store`` is the URI of the vector store to write (see
    :mod:`qa.vectorstore`; None: the one the index uses, FAISS files for a new index);
    naming another one moves the vectors.

    A document is re-embedded only when its content hash changed; deleted documents
    are dropped; unreadable or unsupported files are skipped with a reason, and a
    document indexed before keeps its indexed version when it can't be read now.
    Vectors are journalled as they are embedded, so a rerun after an interruption
    resumes. The whole update holds the writer lock; the new generation replaces
    the old atomically. An index that can't be read is rebuilt from its documents
    as far as they are known (see :func:`qa.previous_index.previous_snapshot`), never replaced by
    the bundled article. Returns an :class:`IndexReport`.
    """
    started = time.perf_counter()
    notify = notify or (lambda _message: None)
    with writer_lock(index_dir, timeout=lock_timeout):
        remove_leftovers(index_dir)  # of a run killed while writing
        previous, library = _starting_point(index_dir, current, bool(inputs), replace_all, notify)
        carried = [] if replace_all else list(library.roots)
        model = model or library.model_name
        request = UpdateRequest(list(inputs), model, embedder, list(remove), replace_all, notify, progress, carried,
                                skips_shown, ray, store)
        report = _update(index_dir, previous, request)
    report.seconds = time.perf_counter() - started
    return report


def _starting_point(index_dir: Path, current: Snapshot | None, has_inputs: bool, replace_all: bool,
                    notify: Notify) -> tuple[Snapshot | None, CarriedLibrary]:
    """Return the snapshot an update starts from (None: none to reuse) and what an index
    that can't be loaded says about its documents, which are indexed again (else an
    empty library).

    The caller's verified ``current`` is used while ``CURRENT`` still names it. An index
    this user's qa did not write is only ever replaced (``replace_all``), from the paths
    given: :class:`IndexingError` otherwise. The caller holds the writer lock.
    """
    if current is not None and is_current(index_dir, current):
        previous, library, signed = current, CarriedLibrary(), current.signed
    else:
        previous, library, signed = previous_snapshot(index_dir, notify, has_inputs=has_inputs)
    if not signed:
        if not replace_all:
            raise IndexingError(foreign_index_message(index_dir))
        notify(f"the index in {index_dir} was not written by your qa: building a new one from the paths given")
        previous, library = None, CarriedLibrary()
    return previous, library


def build_index(
    index_dir: Path,
    paths: Sequence[Path],
    embedder: Embedder,
    notify: Notify | None = None,
    progress: PassageProgress | None = None,
) -> IndexReport:
    """Make the index in ``index_dir`` hold exactly ``paths``, embedded with ``embedder``.

    See :func:`update_index` (with ``replace_all``): unchanged documents keep their vectors.
    """
    return update_index(index_dir, paths, embedder=embedder, replace_all=True, notify=notify, progress=progress)


def _update(index_dir: Path, previous: Snapshot | None, request: UpdateRequest) -> IndexReport:
    """Update the index from ``previous`` (None: a new one) as ``request`` asks; return the report.

    Writes a new generation only when something changed: documents, roots, the
    vector store, the lexicon's rules, or the records of what was passed over or
    skipped.
    """
    manifest = previous.manifest if previous else Manifest()
    backend, moved = store_backend(request.store, previous.manifest if previous else None)
    built_with = manifest.model_name
    name = request.embedder.name if request.embedder is not None else (request.model_name or built_with or DEFAULT_MODEL)
    model = UpdateModel(name, request.embedder, request.notify)
    report = IndexReport(index_dir)
    old_rows = rows_by_document(previous) if previous else {}
    reusable = bool(previous) and built_with == name and manifest.chunking == expected_chunking(manifest)
    plan = plan_update(manifest, previous is not None, old_rows, model, reusable, request, report)
    records = {
        "passed_over": passed_over(plan.files, plan.kept, plan.chunked),
        "skipped": skipped_record(report.listed_skips()) if request.skips_shown else manifest.skipped,
    }
    report.skipped_before = set(manifest.skipped)
    if previous and not moved and _nothing_changed(manifest, plan, old_rows, records, report):
        # A run killed after its generation became current left its journal.
        remove_journals(index_dir, journal_dir(index_dir, name, recorded_probe(manifest)))
        report.unchanged = len(plan.kept)
        report.documents = len(previous.manifest.documents)
        report.passages = len(previous.passages)
        return report
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    documents = _in_index_order(plan, old_rows, now, report)
    dim = model.embedder.dim if plan.chunked or model.loaded else previous.content.vectors.shape[1]
    vectors, sentence_vectors = vectors_of(index_dir, documents, old_rows if plan.reusable else {}, model, manifest,
                                           dim, request.notify, request.progress, report, request.ray)
    write_generation(index_dir, manifest, documents, vectors, sentence_vectors, plan.roots, plan.excluded, records,
                     model, previous, now, backend)
    report.documents = len(documents)
    report.passages = len(vectors)
    report.written = True
    return report


def _nothing_changed(manifest: Manifest, plan: UpdatePlan, old_rows: dict[str, DocumentRows], records: dict,
                     report: IndexReport) -> bool:
    """Return whether the index already says all the update found: no document read
    again or removed, the same roots and exclusions, no record restated (a file
    touched but unchanged), the lexicon's rules current, and the same records of the
    files passed over and skipped."""
    restated = any(rows.record is not old_rows[key].record for key, rows in plan.kept.items() if key in old_rows)
    return (
        plan.reusable
        and not plan.chunked
        and not report.removed
        and tuple(plan.roots) == manifest.roots
        and tuple(plan.excluded) == manifest.excluded
        and not restated
        and not lexicon_reasons(manifest)
        and records["passed_over"] == manifest.passed_over
        and records["skipped"] == manifest.skipped
    )


def _in_index_order(plan: UpdatePlan, old_rows: dict[str, DocumentRows], now: str,
                    report: IndexReport) -> list[DocumentRows | Chunked]:
    """Return the documents of the new generation in index order (the files as found,
    then kept documents outside today's roots), dating the chunked ones and counting
    them as added or updated in ``report``."""
    order = [k for k in plan.files if k in plan.kept or k in plan.chunked] + [k for k in plan.kept if k not in plan.files]
    documents: list[DocumentRows | Chunked] = []
    for key in order:
        if key in plan.chunked:
            item = plan.chunked[key]
            (report.updated if key in old_rows else report.added).append(item.record.source)
            added = (old_rows[key].record.added or now) if key in old_rows else now
            documents.append(replace(item, record=replace(item.record, added=added, updated=now)))
        else:
            report.unchanged += 1
            documents.append(plan.kept[key])
    return documents
