"""Writing a generation of the index and making it current, atomically.

:func:`write_index` writes every file of a new generation into a private temporary
directory, fsyncs each, writes the manifest (with their checksums), its checksum and
its signature, renames the directory to ``gen-*`` and only then swaps ``CURRENT``
(the commit point). A crash at any moment leaves the old index current. Old
generations and crash leftovers are removed after the swap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from qa import jsontext
from qa.files import file_sha256, fsync_dir, write_synced
from qa.index_dir import (
    BACKGROUND,
    CORE_FILES,
    CURRENT,
    FORMAT_VERSION,
    GENERATIONS_KEPT,
    LEXICON,
    MANIFEST,
    MANIFEST_SHA,
    MANIFEST_SIG,
    PASSAGES,
    SENTENCES,
    VECTORS_NPY,
    MAX_MANIFEST_BYTES,
    IndexDiskFull,
    StoreError,
    _read_current,
    _remove_entry,
    _remove_tmp,
    ensure_writable,
    generations,
    is_disk_full,
    read_bounded,
)
from qa.index_read import IndexContent, _signed, read_library
from qa.manifest import FileRecord, Manifest
from qa.recovery import IntactGeneration, _intact_manifest
from qa.vectorstore import VectorBackend, backend_for_record, vector_backend


def write_index(index_dir: Path, manifest: Manifest | Mapping[str, Any], content: IndexContent,
                backend: VectorBackend | None = None) -> Path:
    """Write a new generation of the index and make it current, atomically.

    Takes the manifest (a :class:`qa.manifest.Manifest`, or its JSON object, checked
    here; ``files``, ``format_version``, ``dim`` and ``vectors`` are filled in here), the content (passages with one unit vector each, their
    sentences, lexicon and background vectors) and the vector store to search them
    with (default: FAISS files). The caller must hold :func:`writer_lock`. Until the
    final rename of ``CURRENT`` the previous index stays current; a crash leaves at most
    a stray temporary directory, removed by the next write. Returns the new
    generation's directory.
    """
    backend = backend or vector_backend()
    if not isinstance(manifest, Manifest):
        manifest = Manifest.from_json({"files": {}, **manifest})
    vectors = np.ascontiguousarray(content.vectors, dtype=np.float32)
    if vectors.shape[0] != len(content.passages) or len(content.sentence_spans) != len(content.passages):
        raise ValueError("one vector and one sentence list per passage are required")
    ensure_writable(index_dir)
    generation = f"gen-{time.time_ns()}-{os.getpid()}"
    # mkdtemp: made exclusively, mode 0700, so nothing can be planted in it before qa writes
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{generation}-", dir=index_dir))
    try:
        record = backend.write(vectors, tmp, generation)
        _write_content(tmp, manifest, content, vectors)
        files = (*record["files"], *CORE_FILES)
        for name in files:
            with open(tmp / name, "rb+") as handle:
                os.fsync(handle.fileno())
        manifest_sha = _write_manifest(tmp, replace(
            manifest,
            format_version=FORMAT_VERSION,
            dim=int(vectors.shape[1]),
            vectors=record,
            files={name: FileRecord(file_sha256(tmp / name, follow_links=False), (tmp / name).stat().st_size)
                   for name in files},
        ))
        for entry in os.scandir(tmp):  # private as ssh's files: documents may be 0600
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o600)
        fsync_dir(tmp, ignore_errors=True)
        os.rename(tmp, index_dir / generation)
        fsync_dir(index_dir, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise IndexDiskFull() from None
        raise
    _commit(index_dir, generation, manifest_sha)
    _remove_old_generations(index_dir, generation)
    return index_dir / generation


def _commit(index_dir: Path, generation: str, manifest_sha: str) -> None:
    """Make the written ``generation`` current (:func:`_swap_current`, the commit point).
    A full disk before ``CURRENT`` names it removes it: :class:`IndexDiskFull`, and the
    previous index stays current."""
    try:
        _swap_current(index_dir, generation, manifest_sha)
    except OSError as exc:  # CURRENT still names the previous generation: the new one goes
        if is_disk_full(exc) and not _names_current(index_dir, generation):
            _remove_entry(index_dir / generation)
            raise IndexDiskFull() from None
        raise


def _names_current(index_dir: Path, generation: str) -> bool:
    try:
        return _read_current(index_dir)[0] == generation
    except StoreError:
        return False


def _write_content(tmp: Path, manifest: Manifest, content: IndexContent, vectors: np.ndarray) -> None:
    """Write a generation's arrays and ``passages.jsonl`` into ``tmp`` (not yet synced)."""
    for name, array in ((VECTORS_NPY, vectors), (BACKGROUND, content.background),
                        (SENTENCES, content.sentence_vectors)):
        _save_npy(tmp / name, array)
    with open(tmp / LEXICON, "wb") as handle:
        np.savez(handle, **content.lexicon)
    doc_numbers = {doc.source: i for i, doc in enumerate(manifest.documents)}
    with open(tmp / PASSAGES, "w", encoding="utf-8", newline="\n") as handle:  # line by line: no copy of it all
        for p, spans in zip(content.passages, content.sentence_spans):
            row = {"doc": doc_numbers[p.source], "start": p.start, "end": p.end, "text": p.text,
                   "sentences": [list(span) for span in spans],
                   **({"line": p.line} if p.line else {}), **({"page": p.page} if p.page else {})}
            handle.write(jsontext.dumps(row) + "\n")


class _PlainWriter:
    """A file seen by numpy as a mere object with ``write``: numpy then writes through
    Python's file (in chunks, so no copy of the array), whose errors carry their errno,
    instead of ``ndarray.tofile``, whose short write on a full disk is an ``OSError``
    without one ("157440 requested and 126944 written")."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data) -> int:
        return self._handle.write(data)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(_PlainWriter(handle), np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


def _write_manifest(tmp: Path, manifest: Manifest) -> str:
    """Write the manifest, its checksum and this user's signature of it into ``tmp``,
    each synced; return the checksum (what ``CURRENT`` will name)."""
    from qa.signing import sign

    manifest_bytes = jsontext.dumps(manifest.to_json(), indent=1).encode("utf-8")
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    write_synced(tmp / MANIFEST, manifest_bytes)
    write_synced(tmp / MANIFEST_SHA, f"{manifest_sha}\n".encode())
    write_synced(tmp / MANIFEST_SIG, f"{sign(manifest_bytes)}\n".encode())
    return manifest_sha


def _swap_current(index_dir: Path, generation: str, manifest_sha: str) -> None:
    """Point ``CURRENT`` at ``generation`` (whose manifest has ``manifest_sha``), atomically."""
    # mkstemp: a fresh name, created exclusively (a link planted at a predictable name
    # would have been followed), mode 0600
    fd, current_tmp = tempfile.mkstemp(prefix=f".tmp-{CURRENT}-", dir=index_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(f"{generation} {manifest_sha}\n".encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(current_tmp, index_dir / CURRENT)
    except BaseException:
        Path(current_tmp).unlink(missing_ok=True)
        raise
    fsync_dir(index_dir, ignore_errors=True)


def make_current(index_dir: Path, intact: IntactGeneration) -> None:
    """Make a verified generation (``intact.snapshot`` is set) the current one, atomically.

    For an index whose ``CURRENT`` or current manifest is damaged, recovered from an
    older generation. The caller holds :func:`writer_lock`.
    """
    if intact.snapshot is None:
        raise ValueError("only a generation whose files were verified can be made current")
    _swap_current(index_dir, intact.generation, intact.manifest_sha)


def _remove_old_generations(index_dir: Path, current: str) -> None:
    """Delete leftovers of crashed writes and all but the newest generations.

    The previous generation is kept so that a reader that has just read the old
    ``CURRENT`` can still open it, and so that a damaged index can be recovered from
    it. Generations whose manifest is intact are kept in preference to damaged ones
    (after a recovery, the damaged generation is the newest of the old ones).
    """
    others = [name for name in generations(index_dir) if name != current]  # newest first
    if len(others) <= GENERATIONS_KEPT - 1:
        _remove_tmp(index_dir)
        return
    ranked = sorted(others, key=lambda name: _intact_manifest(index_dir, name) is None)  # stable: newest first
    for old in ranked[GENERATIONS_KEPT - 1:]:
        _drop_vectors(index_dir, old)
        _remove_entry(index_dir / old)
    _remove_tmp(index_dir)


def _drop_vectors(index_dir: Path, generation: str) -> None:
    """Let a generation's vector store free what it holds outside the directory (a server's
    collection), before the directory goes. Only an intact manifest that this user's qa
    signed is trusted for that: whoever can write the index directory could plant a
    generation naming any collection of the user's."""
    try:
        data = read_bounded(index_dir / generation / MANIFEST, MAX_MANIFEST_BYTES)
    except OSError:
        return
    if not _signed(index_dir / generation, data):
        return
    intact = _intact_manifest(index_dir, generation, data)
    record = intact[0].vectors if intact and intact[0] else None
    if not isinstance(record, dict) or record.get("store") == "faiss":
        return
    try:
        backend_for_record(record).drop(record)
    except Exception:  # noqa: BLE001 - a server gone away keeps an orphan collection, never fails a write
        pass


def remove_leftovers(index_dir: Path) -> None:
    """Delete what killed writes left in ``index_dir``: ``.tmp-*``, and generations past the
    two newest (a write killed between swapping ``CURRENT`` and its clean-up).

    Generations are left alone while the current manifest can't be trusted (or
    ``CURRENT`` can't): the older ones are what the index is recovered from. The
    caller holds :func:`writer_lock`.
    """
    try:
        current = _read_current(index_dir)[0]
    except StoreError:
        current = None
    if current and (index_dir / current).is_dir() and read_library(index_dir) is not None:
        others = [p for p in index_dir.glob("gen-*") if p.name != current]
        if len(others) > GENERATIONS_KEPT - 1:
            _remove_old_generations(index_dir, current)
            return
    _remove_tmp(index_dir)
