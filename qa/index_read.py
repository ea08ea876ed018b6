"""Reading a generation of the index: verified against its checksums, then loaded.

:func:`read_index` is the one way an index is read: ``CURRENT`` names a generation
and its manifest's checksum; every file is checked against the manifest's SHA-256
sums before it is parsed; arrays are loaded without pickles (large ones
memory-mapped); the vector store is opened through its backend. Anything that does
not match is :class:`qa.index_dir.IndexCorrupt`, said in one line.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import jsontext
from qa.documents import Passage
from qa.files import file_sha256, open_regular
from qa.index_dir import (
    BACKGROUND,
    CORE_FILES,
    FAISS_RECORD,
    FORMAT_VERSION,
    LEXICON,
    MANIFEST,
    MANIFEST_SHA,
    MANIFEST_SIG,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    MMAP_MIN_BYTES,
    PASSAGES,
    SENTENCES,
    VECTORS_NPY,
    IndexCorrupt,
    IndexOldFormat,
    StoreError,
    _read_current,
    read_bounded,
)
from qa.manifest import CarriedLibrary, DocumentRecord, Manifest, ManifestError
from qa.vectorstore import VectorStore, backend_for_record


@dataclass
class IndexContent:
    """Everything an index holds besides its manifest, in memory.

    ``sentence_spans[i]`` are the document offsets of passage ``i``'s sentences, and
    ``sentence_vectors`` has one row per sentence, passage by passage. ``lexicon``
    is :meth:`qa.lexical.Lexicon.to_arrays` of the passages.
    """

    passages: list[Passage]
    vectors: np.ndarray
    sentence_spans: list[list[tuple[int, int]]]
    sentence_vectors: np.ndarray
    lexicon: dict[str, np.ndarray]
    background: np.ndarray


@dataclass
class Snapshot:
    """One consistent generation of an index, loaded and verified.

    ``vector_store`` searches the passage vectors (row ``i`` is passage ``i``): a
    small index is scored exactly from ``content.vectors`` and never needs it (nor the
    time to import FAISS). The rest of the content serves re-scoring, highlighting
    and "no answer".
    """

    directory: Path
    manifest: Manifest
    content: IndexContent
    vector_store: "VectorStore"
    signed: bool = False  # written by this user's qa (see qa.signing): may be refreshed

    @property
    def passages(self) -> list[Passage]:
        """The passages, in index order."""
        return self.content.passages

    @property
    def background(self) -> np.ndarray:
        """Vectors of unrelated text: the null model for "no answer"."""
        return self.content.background

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)`` of the ``k`` passages closest to each query row, from the
        generation's vector store (:class:`qa.vectorstore.VectorStore`).

        Scores are inner products of unit vectors (cosines; approximate from an
        approximate store), best first; ids are passage numbers. ``k`` larger than the
        index is capped.
        """
        return self.vector_store.search(queries, k)


def is_current(index_dir: Path, snapshot: Snapshot) -> bool:
    """Return whether ``CURRENT`` in ``index_dir`` still names ``snapshot``'s generation.

    A generation's files never change once written and its name is unique, so a
    snapshot verified earlier is still the index when this holds: an update under the
    writer lock uses it instead of reading and checksumming the index again.
    """
    try:
        return _read_current(index_dir)[0] == snapshot.directory.name
    except StoreError:
        return False


def read_library(index_dir: Path) -> CarriedLibrary | None:
    """Return what the current generation's manifest says about its documents, if the
    manifest is intact (its checksum matches ``CURRENT``), else None: what a damaged
    index, or one of an older format, still says about its library."""
    try:
        generation, manifest_sha = _read_current(index_dir)
        data = read_bounded(index_dir / generation / MANIFEST, MAX_MANIFEST_BYTES)
        if hashlib.sha256(data).hexdigest() != manifest_sha:
            return None
        manifest = jsontext.loads(data)
    except (StoreError, OSError, ValueError):
        return None
    return CarriedLibrary.from_json(manifest) if isinstance(manifest, dict) else None


def read_index(index_dir: Path) -> Snapshot:
    """Load and verify the current generation of the index in ``index_dir``.

    Raises :class:`IndexMissing` when there is none and :class:`IndexCorrupt` when
    any file fails its checksum or can't be parsed. A generation replaced by a
    concurrent writer while being read is retried on the new one.
    """
    for attempt in range(5):
        generation, manifest_sha = _read_current(index_dir)
        try:
            return _read_generation(index_dir, generation, manifest_sha)
        except FileNotFoundError:
            if _read_current(index_dir)[0] == generation and attempt:
                raise IndexCorrupt(
                    f"index at {index_dir} is damaged: generation {generation} is missing"
                ) from None
            time.sleep(0.05)
    raise IndexCorrupt(f"index at {index_dir} keeps changing while being read")


def _check_manifest(index_dir: Path, manifest_bytes: bytes, manifest_sha: str) -> Manifest:
    """Return the parsed manifest if it matches ``manifest_sha`` and is a manifest of this
    qa's format; raise :class:`IndexCorrupt` (or :class:`IndexOldFormat`) otherwise."""
    damaged = f"index at {index_dir} is damaged"
    if hashlib.sha256(manifest_bytes).hexdigest() != manifest_sha:
        raise IndexCorrupt(f"{damaged}: {MANIFEST} does not match its checksum")
    try:
        manifest = jsontext.loads(manifest_bytes)
    except ValueError:
        raise IndexCorrupt(f"{damaged}: {MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IndexCorrupt(f"{damaged}: {MANIFEST} is not an index manifest")
    version = manifest.get("format_version")
    if isinstance(version, int) and 1 <= version < FORMAT_VERSION:  # read only for its document list
        raise IndexOldFormat(
            f"index at {index_dir} has format version {version} of an older qa; rebuild it with `qa index`",
            CarriedLibrary.from_json(manifest),
        )
    if version != FORMAT_VERSION:
        raise IndexCorrupt(
            f"index at {index_dir} has format version {version}; this qa reads version "
            f"{FORMAT_VERSION}: rebuild it with `qa index`"
        )
    try:
        return Manifest.from_json(manifest)
    except ManifestError as exc:
        raise IndexCorrupt(f"{damaged}: {MANIFEST}: {exc}") from None


def _read_generation(index_dir: Path, generation: str, manifest_sha: str) -> Snapshot:
    """Verify and load one generation whose manifest should have ``manifest_sha``.

    Raises :class:`IndexCorrupt` for anything damaged, and ``FileNotFoundError`` when a
    concurrent writer removed the generation meanwhile (:func:`read_index` retries).
    """
    gen_dir = index_dir / generation
    damaged = f"index at {index_dir} is damaged"
    if os.path.islink(gen_dir):  # qa's own folders are never links: don't read through one
        raise IndexCorrupt(f"{damaged}: {generation} is a symbolic link")
    try:
        manifest_bytes = read_bounded(gen_dir / MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise IndexCorrupt(f"{damaged}: {MANIFEST}: {exc.strerror or exc}") from None
    manifest = _check_manifest(index_dir, manifest_bytes, manifest_sha)
    record = _vector_record(manifest.vectors, damaged)
    verify = _verifier(gen_dir, manifest, damaged)
    for name in (*record["files"], *CORE_FILES):
        verify(name)
    content = _load_content(gen_dir, manifest, record, damaged)
    _check_shapes(content, manifest, damaged)
    try:
        store = backend_for_record(record).open(record, gen_dir, content.vectors, verify)
    except IndexCorrupt:
        if not all((gen_dir / name).exists() for name in record["files"]):
            raise FileNotFoundError(f"{gen_dir} was removed while being read") from None
        raise
    return Snapshot(gen_dir, manifest, content, store, _signed(gen_dir, manifest_bytes))


def _verifier(gen_dir: Path, manifest: Manifest, damaged: str):
    """Return a function that checks one file of the generation against the manifest's
    SHA-256 (and size), raising :class:`IndexCorrupt` when it doesn't match. The vector
    store's ``open`` gets it too, for files only it knows how to read."""

    def verify(name: str) -> None:
        entry = manifest.files.get(name)
        expected = entry.sha256 if entry else None
        try:
            digest = file_sha256(gen_dir / name, follow_links=False, size=entry.bytes if entry else None)
        except FileNotFoundError:
            raise
        except OSError:  # a FIFO, a device, a symbolic link (never followed), unreadable
            raise IndexCorrupt(f"{damaged}: {name} is not a regular file") from None
        if expected is None or digest != expected:
            raise IndexCorrupt(f"{damaged}: {name} does not match its checksum")

    return verify


def _load_content(gen_dir: Path, manifest: Manifest, record: dict, damaged: str) -> IndexContent:
    """Parse the verified files of a generation into an :class:`IndexContent`.

    Arrays are loaded without pickles, large ones memory-mapped. Any failure to parse
    is :class:`IndexCorrupt`; a file removed meanwhile is ``FileNotFoundError``.
    """

    def array(name: str) -> np.ndarray:
        big = (gen_dir / name).stat().st_size >= MMAP_MIN_BYTES
        return np.load(gen_dir / name, allow_pickle=False, mmap_mode="r" if big else None)

    try:
        passages, spans = _read_passages(gen_dir / PASSAGES, manifest.documents)
        with np.load(gen_dir / LEXICON, allow_pickle=False) as arrays:
            lexicon = {name: arrays[name] for name in arrays.files}
        return IndexContent(passages, array(VECTORS_NPY), spans, array(SENTENCES), lexicon,
                            np.load(gen_dir / BACKGROUND, allow_pickle=False))
    except Exception as exc:  # noqa: BLE001 - any failure to parse on-disk bytes means "damaged"
        # (json, FAISS, numpy's .npy header parser and zipfile each raise their own
        # kinds, e.g. BadZipFile, EOFError, tokenize.TokenError, MemoryError)
        if not all((gen_dir / name).exists() for name in (MANIFEST, *record["files"], *CORE_FILES)):
            # A concurrent writer removed this (old) generation while it was being read
            # (FAISS reports that as a RuntimeError): read_index retries on the new one.
            raise FileNotFoundError(f"{gen_dir} was removed while being read") from None
        raise IndexCorrupt(f"{damaged}: {type(exc).__name__}") from None


def _read_passages(path: Path, documents: tuple[DocumentRecord, ...]) -> tuple[list[Passage], list[list[tuple[int, int]]]]:
    """Return the passages of ``passages.jsonl`` and their sentence spans, one line at a
    time; raises whatever a malformed line raises (the caller calls it damage)."""
    passages, spans = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = jsontext.loads(line)
            doc = documents[row["doc"]]
            passages.append(
                Passage(row["text"], doc.source, row["start"], row["end"], doc.title,
                        _position(row, "line"), _position(row, "page"))
            )
            spans.append([(int(a), int(b)) for a, b in row["sentences"]])
    return passages, spans


def _check_shapes(content: IndexContent, manifest: Manifest, damaged: str) -> None:
    """Raise :class:`IndexCorrupt` unless the arrays agree with the passages, each other
    and the manifest's dimension (files that each pass their checksum can still be
    from different indexes)."""
    dim = manifest.dim
    spans = content.sentence_spans
    if (
        not isinstance(dim, int)
        or content.vectors.shape != (len(content.passages), dim)
        or content.vectors.dtype != np.float32
        or content.sentence_vectors.shape != (sum(map(len, spans)), dim)
        or content.background.ndim != 2
        or content.background.shape[1:] != (dim,)
        or content.sentence_vectors.dtype != np.float32
        or content.background.dtype != np.float32
    ):
        raise IndexCorrupt(f"{damaged}: its files disagree with each other")


def _signed(gen_dir: Path, manifest_bytes: bytes) -> bool:
    """Return whether a generation's manifest carries this user's signature."""
    from qa.signing import is_signed_by_me

    try:
        with open_regular(gen_dir / MANIFEST_SIG, follow_links=False) as handle:  # no FIFO, no /dev/zero
            signature = handle.read(MAX_SIGNATURE_BYTES).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return is_signed_by_me(manifest_bytes, signature)


def generation_signed(index_dir: Path, generation: str | None = None) -> bool:
    """Return whether a generation (default: the one ``CURRENT`` names) was written by
    this user's qa. False when anything about it can't be read."""
    try:
        generation = generation or _read_current(index_dir)[0]
        return _signed(index_dir / generation, read_bounded(index_dir / generation / MANIFEST))
    except (StoreError, OSError):
        return False


def _vector_record(record: object, damaged: str) -> dict:
    """Return a manifest's record of its vector store (``Manifest.vectors``): which backend,
    which files (FAISS for an index older than the record, None), or raise
    :class:`IndexCorrupt` for a malformed one."""
    record = FAISS_RECORD if record is None else record
    files = record.get("files") if isinstance(record, dict) else None
    if (
        not isinstance(record.get("store") if isinstance(record, dict) else None, str)
        or not isinstance(files, list)
        or not all(isinstance(name, str) and name and "/" not in name and not name.startswith(".")
                   and name not in (MANIFEST, MANIFEST_SHA, *CORE_FILES) for name in files)
    ):
        raise IndexCorrupt(f"{damaged}: its vector store record is malformed")
    try:
        backend_for_record(record)
    except Exception as exc:  # noqa: BLE001 - an unknown store, or one whose library is missing
        raise IndexCorrupt(f"{damaged}: {exc}") from None
    return record


def _position(row: dict, name: str) -> int | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"bad {name}")
    return value
