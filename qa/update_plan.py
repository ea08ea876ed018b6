"""The update planner: which files make up the index now, and which must be read again.

The steps :func:`qa.indexer.update_index` takes before anything is embedded: the
roots and exclusions of the library (:func:`roots_and_exclusions`), the document
files under them (:func:`find_files`), those whose content hash is unchanged
(:func:`split_unchanged`), and the rest read and chunked one at a time
(:func:`read_and_chunk`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from qa.discover import Skipped, find_documents
from qa.documents import DocumentError
from qa.extract import read_document
from qa.index_report import IndexingError, IndexReport, PassageProgress, UpdateRequest
from qa.manifest import Manifest, PassedOver
from qa.index_rows import Chunked, DocumentRows, chunk_for_index, restat
from qa.roots import GLOB, BUNDLED_ROOT, document_key, document_path, is_under, normalize_input, observed_digest, root_path, vanished
from qa.update_model import UpdateModel, check_model
from qa.vectorstore import VectorBackend, backend_for_record, store_uri, vector_backend


@dataclass
class UpdatePlan:
    """What an update found: the library's roots and exclusions, its files by key, the
    documents kept as they are (their rows) and those read and chunked again, and
    whether the previous index's vectors can still be used."""

    roots: list[str]
    excluded: list[str]
    files: dict[str, Path]
    kept: dict[str, DocumentRows]
    chunked: dict[str, Chunked]
    reusable: bool


def plan_update(manifest: Manifest, has_previous: bool, old_rows: dict[str, DocumentRows], model: UpdateModel,
                reusable: bool, request: UpdateRequest, report: IndexReport) -> UpdatePlan:
    """Find the library's files, keep the unchanged ones and read and chunk the rest.

    Takes the previous manifest (an empty one when there is none), whether there is a
    previous index, its rows by document key, the update's model, whether the
    previous vectors are usable as far as known, the request and the report (which
    collects what was removed, skipped or failed). Raises :class:`IndexingError` when
    a replacement would index less than was named, or a first index nothing.
    """
    new_roots = [normalize_input(i) for i in request.inputs]
    roots, excluded = roots_and_exclusions(manifest if has_previous else None, new_roots, [normalize_input(r) for r in request.remove],
                                           request.carried, request.replace_all, old_rows)
    # A folder or file indexed before and deleted since is forgotten (its documents dropped).
    roots = [r for r in roots if r in new_roots or r == BUNDLED_ROOT or GLOB.search(r) or not vanished(Path(r))]
    files, root_files = find_files(roots, excluded, old_rows, request.replace_all, report)
    kept, pending = split_unchanged(files, old_rows, reusable, report)
    if request.embedder is not None and reusable:
        reusable = check_model(model, manifest, reusable, request.notify)
    chunked, reusable = read_and_chunk(files, kept, pending, old_rows, model, manifest, reusable, request.notify,
                                       report, request.progress)
    if not reusable:
        kept = {}
    roots = drop_failed_inputs(roots, new_roots, root_files, kept, chunked, report)
    if request.replace_all and report.failed_inputs:  # replacing the library by less than was named: refuse
        raise IndexingError("; ".join(f"{item.path}: {item.reason}" for item in report.failed_inputs)
                            + "; nothing was replaced")
    if not has_previous and not chunked and not kept:  # a first index with nothing in it
        reasons = "; ".join(f"{item.path}: {item.reason}" for item in report.failed_inputs)
        raise IndexingError(f"{reasons or 'nothing to index'}; no index was written")
    return UpdatePlan(roots, excluded, files, kept, chunked, reusable)


def store_backend(store: str | None, manifest: Manifest | None) -> tuple[VectorBackend, bool]:
    """Return the vector backend an update writes with, and whether it differs from the index's own.

    No ``store`` keeps the store the index was written with (FAISS files for a new one).
    """
    recorded = backend_for_record(manifest.vectors) if manifest is not None else None
    if store is None:
        return recorded or vector_backend(), False
    backend = vector_backend(store)
    if hasattr(backend, "check"):  # a server: unreachable is said before any embedding, not after
        backend.check()
    moved = recorded is not None and store_uri(backend) != store_uri(recorded)
    return backend, moved


def roots_and_exclusions(manifest: Manifest | None, new_roots: list[str], removals: list[str], carried: Sequence[str],
                          replace_all: bool, old_rows: dict) -> tuple[list[str], list[str]]:
    """Return the roots to scan (earlier runs' and today's) and the paths excluded from them.

    A removed path leaves the roots and joins the exclusions, so that a scan of the
    folder around it doesn't bring it back; naming a path again lifts its exclusion.
    Raises :class:`IndexingError` for a removal of something not in the index.
    """
    old_roots, old_excluded = (manifest.roots, manifest.excluded) if manifest else ((), ())
    roots = list(dict.fromkeys(new_roots if replace_all else [*old_roots, *carried, *new_roots]))
    # Naming a path again lifts an exclusion of it or of a folder around it, not of what is inside it.
    excluded = [] if replace_all else [e for e in old_excluded if not any(is_under(r, e) for r in new_roots)]
    for target in removals:
        if not any(is_under(root_path(k), root_path(target)) for k in old_rows) and not any(is_under(r, target) for r in roots):
            raise IndexingError(f"{target} is not in the index")
    if removals:
        roots = [r for r in roots if not any(is_under(root_path(r), root_path(t)) for t in removals)]
        excluded = list(dict.fromkeys([*excluded, *(root_path(t) for t in removals)]))
    if not roots and not manifest and not carried and not replace_all and not removals:
        roots = [BUNDLED_ROOT]
    return roots, excluded


def find_files(roots: list[str], excluded: list[str], old_rows: dict, replace_all: bool,
                report: IndexReport) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Return the document files that make up the index now, by key, and each root's keys.

    Documents indexed before that are now deleted, excluded or (with ``replace_all``)
    not among the roots are listed in ``report.removed``; the others stay, even
    outside today's roots.
    """

    def is_excluded(path: str) -> bool:
        return any(is_under(path, e) for e in excluded)

    files: dict[str, Path] = {}
    root_files: dict[str, list[str]] = {}
    walk_skips: list[Skipped] = []
    for root in roots:
        found = find_documents([root_path(root)])
        walk_skips.extend(found.skipped)
        root_files[root] = []
        for path in found.files:
            resolved = Path(os.path.realpath(path))  # never raises: a link loop stays as named
            if not is_excluded(str(resolved)):
                files.setdefault(document_key(resolved), path)
                root_files[root].append(document_key(resolved))
    for key, rows in old_rows.items():
        path = document_path(rows.record)
        if key in files:
            continue
        if replace_all or is_excluded(str(path)) or vanished(path):
            report.removed.append(rows.record.source)
        else:
            files[key] = path
    # A file a folder walk passes over (an unlisted suffix) but that was named and indexed
    # before is a document of the index, not a skipped file.
    report.skipped.extend(item for item in walk_skips if document_key(os.path.realpath(item.path)) not in files)
    return files, root_files


def passed_over(files: dict[str, Path], kept: dict, chunked: dict) -> tuple[PassedOver, ...]:
    """Return the files found under the roots that gave nothing to index (binary, empty
    text, a scanned PDF...), with their size and modification time, sorted by key.

    Recorded in the manifest so that :func:`new_documents` doesn't take them for new
    documents before every question; a change to one makes it new again.
    """
    out = []
    for key in sorted(files):
        if key in kept or key in chunked:
            continue
        try:
            stat = files[key].stat()
        except OSError:
            continue
        out.append(PassedOver(key, stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def split_unchanged(files: dict[str, Path], old_rows: dict, reusable: bool,
                     report: IndexReport) -> tuple[dict[str, DocumentRows], list[str]]:
    """Return the documents whose content hash is unchanged (their rows), and the keys of the rest."""
    kept: dict[str, DocumentRows] = {}
    pending: list[str] = []
    for key, path in files.items():
        old = old_rows.get(key)
        try:
            digest, observed = observed_digest(path)
        except OSError as exc:
            _skip_keeping(report, kept, key, path, old, exc.strerror or type(exc).__name__)
            continue
        if reusable and old and old.record.sha256 == digest:
            kept[key] = restat(old, path, observed)
        else:
            pending.append(key)
    return kept, pending


def read_and_chunk(files, kept, pending, old_rows, model: UpdateModel, manifest, reusable: bool, notify,
                    report: IndexReport, progress: PassageProgress | None = None) -> tuple[dict[str, Chunked], bool]:
    """Read and chunk the pending documents, one at a time, so that only passages stay in memory.

    The model is loaded with the first readable document; if it no longer gives the
    previous index's vectors, every kept document is chunked again too. Returns the
    chunked documents and whether the previous index's vectors are still usable.
    """
    chunked: dict[str, Chunked] = {}
    queue = list(pending) if reusable else list(dict.fromkeys([*pending, *kept]))
    read = 0
    while queue:
        if progress and len(queue) + read > 1:
            progress(read, len(queue) + read, "reading files")
        key = queue.pop(0)
        read += 1
        path = files[key]
        try:
            document = read_document(path)
        except DocumentError as exc:
            kept.pop(key, None)
            _skip_keeping(report, kept, key, path, old_rows.get(key) if reusable else None,
                          str(exc).removeprefix(f"{path}: "))
            continue
        if not model.loaded and reusable and not check_model(model, manifest, reusable, notify):
            reusable = False
            queue = list(dict.fromkeys([*queue, *kept]))
        chunked[key] = chunk_for_index(document, model.embedder, progress)
        if document.note:
            report.notes.append(Skipped(str(path), document.note))
        del document
    if progress and read > 1:
        progress(read, read, "reading files")
    return chunked, reusable


def skipped_record(skipped: list[Skipped]) -> tuple[tuple[str, str], ...]:
    """Return what the manifest keeps of a run's skipped files: sorted ``(path, reason)`` pairs.

    The next run compares its own with it, so that ``qa index`` lists in full only the
    files skipped for a new reason, not the same ones on every run.
    """
    return tuple(sorted({(item.path, item.reason) for item in skipped}))


def drop_failed_inputs(roots, new_roots, root_files, kept, chunked, report: IndexReport) -> list[str]:
    """Record today's inputs that gave nothing to index (an error), and forget them as roots."""
    for root in new_roots:
        if not any(key in kept or key in chunked for key in root_files.get(root, ())):
            path = root_path(root)
            reasons = sorted({item.reason for item in report.skipped if is_under(item.path, path)})
            report.failed_inputs.append(Skipped(path, reasons[0] if len(reasons) == 1 else "no documents to index"))
    failed = {item.path for item in report.failed_inputs}
    return [r for r in roots if root_path(r) not in failed]


def _skip_keeping(report: IndexReport, kept: dict, key: str, path: Path, old: DocumentRows | None, reason: str) -> None:
    if old is not None:
        kept[key] = restat(old, path)
        reason += "; keeping the version indexed before"
    report.skipped.append(Skipped(str(path), reason))
