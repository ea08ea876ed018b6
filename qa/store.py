"""The index on disk: FAISS vectors, passages and a manifest, written atomically.

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

import errno
import hashlib
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from qa import jsontext
from qa.documents import NotARegularFile, Passage
from qa.manifest import Manifest, ManifestError, validate_manifest
from qa.vectorstore import VectorBackend, VectorStore, backend_for_record, vector_backend

FORMAT_VERSION = 4
CURRENT = "CURRENT"
LOCK = ".lock"
MANIFEST = "manifest.json"
MANIFEST_SHA = "manifest.sha256"
# This user's HMAC of the manifest (qa/signing.py): whether qa may refresh the index
# from the paths its manifest names.
MANIFEST_SIG = "manifest.hmac"
MAX_SIGNATURE_BYTES = 256
# Index files are regular files of bounded size, or the index is damaged: CURRENT or
# a manifest linked to /dev/zero grew memory by gigabytes; a FIFO hung every read.
MAX_SMALL_FILE_BYTES = 4096
MAX_MANIFEST_BYTES = 256 << 20
VECTORS = "vectors.faiss"
VECTORS_NPY = "vectors.npy"
# Arrays of at least this size are memory-mapped when an index is read, not loaded.
MMAP_MIN_BYTES = 32 << 20
PASSAGES = "passages.jsonl"
BACKGROUND = "background.npy"
SENTENCES = "sentences.npy"
LEXICON = "lexicon.npz"
CORE_FILES = (VECTORS_NPY, PASSAGES, SENTENCES, LEXICON, BACKGROUND)
"""The files of every generation, whatever its vector store."""
DATA_FILES = (VECTORS, *CORE_FILES)
"""The files of a generation whose vectors are searched by FAISS (the default store)."""
FAISS_RECORD = {"store": "faiss", "files": [VECTORS]}
"""The vector record of an index written before vector stores could be chosen."""
GENERATIONS_KEPT = 2


class StoreError(Exception):
    """Something is wrong with an index directory; the message is one line for the user."""


class IndexMissing(StoreError):
    """There is no index in the directory yet."""


class IndexCorrupt(StoreError):
    """An index file is damaged, truncated, or does not belong to this index."""


class IndexOldFormat(IndexCorrupt):
    """The index was written by an older qa.

    ``manifest`` is its manifest (parsed, checksum verified), whose documents can be
    indexed again.
    """

    def __init__(self, message: str, manifest: dict):
        super().__init__(message)
        self.manifest = manifest


class IndexBusy(StoreError):
    """Another process is writing the index."""


class IndexDiskFull(StoreError):
    """The file system filled up (or the user's quota) while a new generation was
    written; it was removed, and the previous index is current and intact."""

    def __init__(self, message: str = "disk full while writing the index; the previous index is unchanged"):
        super().__init__(message)
        self.reason = message


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Return whether ``exc`` says the file system or the quota is full.

    An ``OSError`` says so by its errno; FAISS, which writes from C++, raises a
    ``RuntimeError`` whose text ends with the system's message ("No space left on
    device"), so that text counts too.
    """
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, (OSError, RuntimeError)) and any(os.strerror(code) in str(exc) for code in DISK_FULL_ERRNOS)


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


class IndexReadOnly(StoreError):
    """Files can't be created in the index directory (a read-only mount, no write
    permission); it can still be read. ``reason`` is the system's word for why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
"""Errors that say a directory can be read but not written."""


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
    manifest: dict
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


def _sha256(path: Path, size: object = None) -> str:
    """Return the SHA-256 of a regular file ("" when ``size`` is given and differs: not
    worth hashing). Raises ``NotARegularFile`` for a FIFO or a device, which would hang
    or never end."""
    from qa.documents import open_regular

    with open_regular(path, follow_links=False) as handle:
        if isinstance(size, int) and os.fstat(handle.fileno()).st_size != size:
            return ""
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _file_in_the_way(index_dir: Path) -> Path | None:
    """Return ``index_dir``, or the ancestor of it, that exists as something other than a
    directory (a regular file where the index should be); None if there is none."""
    for path in (index_dir, *index_dir.parents):
        try:
            if path.exists():
                return None if path.is_dir() else path
        except OSError:
            return None
    return None


def _not_a_directory(index_dir: Path, blocker: Path, doing: str) -> StoreError:
    """The one-line error for an index directory that is a file, or lies under one."""
    if blocker == index_dir:
        return StoreError(f"{index_dir} is not a directory")
    return StoreError(f"cannot {doing} the index directory {index_dir}: {blocker} is not a directory")


def _read_current(index_dir: Path) -> tuple[str, str]:
    try:
        words = read_bounded(index_dir / CURRENT, MAX_SMALL_FILE_BYTES).decode("ascii").split()
    except FileNotFoundError:
        if generations(index_dir):  # generations without a pointer: damaged, not new
            raise IndexCorrupt(f"index at {index_dir} is damaged: {CURRENT} is missing") from None
        raise IndexMissing(f"no index in {index_dir} yet") from None
    except NotADirectoryError as exc:
        blocker = _file_in_the_way(index_dir)
        if blocker is not None:
            raise _not_a_directory(index_dir, blocker, "read") from None
        raise IndexCorrupt(f"index at {index_dir} is damaged: cannot read {CURRENT} ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"index at {index_dir} is damaged: cannot read {CURRENT} ({exc})") from None
    if len(words) != 2 or not words[0].startswith("gen-") or "/" in words[0]:
        raise IndexCorrupt(f"index at {index_dir} is damaged: {CURRENT} is not valid")
    return words[0], words[1]


def _names_current(index_dir: Path, generation: str) -> bool:
    try:
        return _read_current(index_dir)[0] == generation
    except StoreError:
        return False


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


def read_manifest(index_dir: Path) -> dict | None:
    """Return the current generation's manifest if it is intact (its checksum matches
    ``CURRENT``), else None: what a damaged index still says about its documents."""
    try:
        generation, manifest_sha = _read_current(index_dir)
        data = read_bounded(index_dir / generation / MANIFEST, MAX_MANIFEST_BYTES)
        if hashlib.sha256(data).hexdigest() != manifest_sha:
            return None
        manifest = jsontext.loads(data)
    except (StoreError, OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


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
    if version == FORMAT_VERSION:  # an older format is read only for its document list
        try:
            manifest = validate_manifest(manifest)
        except ManifestError as exc:
            raise IndexCorrupt(f"{damaged}: {MANIFEST}: {exc}") from None
    if isinstance(version, int) and 1 <= version < FORMAT_VERSION:
        raise IndexOldFormat(
            f"index at {index_dir} has format version {version} of an older qa; rebuild it with `qa index`",
            manifest,
        )
    if version != FORMAT_VERSION:
        raise IndexCorrupt(
            f"index at {index_dir} has format version {version}; this qa reads version "
            f"{FORMAT_VERSION}: rebuild it with `qa index`"
        )
    return manifest


def _read_generation(index_dir: Path, generation: str, manifest_sha: str) -> Snapshot:
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
    record = _vector_record(manifest, damaged)

    def verify(name: str) -> None:
        entry = manifest["files"].get(name)
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        try:
            digest = _sha256(gen_dir / name, entry.get("bytes") if isinstance(entry, dict) else None)
        except FileNotFoundError:
            raise
        except OSError:  # a FIFO, a device, a symbolic link (never followed), unreadable
            raise IndexCorrupt(f"{damaged}: {name} is not a regular file") from None
        if expected is None or digest != expected:
            raise IndexCorrupt(f"{damaged}: {name} does not match its checksum")

    for name in (*record["files"], *CORE_FILES):
        verify(name)

    def array(name: str) -> np.ndarray:
        big = (gen_dir / name).stat().st_size >= MMAP_MIN_BYTES
        return np.load(gen_dir / name, allow_pickle=False, mmap_mode="r" if big else None)

    try:
        documents = manifest["documents"]
        passages, spans = [], []
        with open(gen_dir / PASSAGES, encoding="utf-8") as handle:
            for line in handle:
                row = jsontext.loads(line)
                doc = documents[row["doc"]]
                passages.append(
                    Passage(row["text"], doc["source"], row["start"], row["end"], doc.get("title"),
                            _position(row, "line"), _position(row, "page"))
                )
                spans.append([(int(a), int(b)) for a, b in row["sentences"]])
        with np.load(gen_dir / LEXICON, allow_pickle=False) as arrays:
            lexicon = {name: arrays[name] for name in arrays.files}
        content = IndexContent(
            passages,
            array(VECTORS_NPY),
            spans,
            array(SENTENCES),
            lexicon,
            np.load(gen_dir / BACKGROUND, allow_pickle=False),
        )
    except Exception as exc:  # noqa: BLE001 - any failure to parse on-disk bytes means "damaged"
        # (json, FAISS, numpy's .npy header parser and zipfile each raise their own
        # kinds, e.g. BadZipFile, EOFError, tokenize.TokenError, MemoryError)
        if not all((gen_dir / name).exists() for name in (MANIFEST, *record["files"], *CORE_FILES)):
            # A concurrent writer removed this (old) generation while it was being read
            # (FAISS reports that as a RuntimeError): read_index retries on the new one.
            raise FileNotFoundError(f"{gen_dir} was removed while being read") from None
        raise IndexCorrupt(f"{damaged}: {type(exc).__name__}") from None
    dim = manifest.get("dim")
    if (
        not isinstance(dim, int)
        or content.vectors.shape != (len(passages), dim)
        or content.vectors.dtype != np.float32
        or content.sentence_vectors.shape != (sum(map(len, spans)), dim)
        or content.background.ndim != 2
        or content.background.shape[1:] != (dim,)
        or content.sentence_vectors.dtype != np.float32
        or content.background.dtype != np.float32
    ):
        raise IndexCorrupt(f"{damaged}: its files disagree with each other")
    try:
        store = backend_for_record(record).open(record, gen_dir, content.vectors, verify)
    except IndexCorrupt:
        if not all((gen_dir / name).exists() for name in record["files"]):
            raise FileNotFoundError(f"{gen_dir} was removed while being read") from None
        raise
    return Snapshot(gen_dir, manifest, content, store, _signed(gen_dir, manifest_bytes))


def _signed(gen_dir: Path, manifest_bytes: bytes) -> bool:
    """Return whether a generation's manifest carries this user's signature."""
    from qa.documents import open_regular
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


def read_bounded(path: Path, limit: int = 64 << 20) -> bytes:
    """Return the bytes of an index file that must be a regular file of at most ``limit``
    bytes; raise ``OSError`` otherwise (a FIFO, ``/dev/zero``, a huge file planted in the
    index directory never hangs qa or fills its memory)."""
    from qa.documents import open_regular

    if path.parent.name.startswith("gen-") and os.path.islink(path.parent):  # a generation is never a link
        raise OSError(errno.ELOOP, "a generation folder that is a symbolic link", str(path.parent))
    with open_regular(path, follow_links=False) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, "larger than an index file can be", str(path))
    return data


def _vector_record(manifest: dict, damaged: str) -> dict:
    """Return a manifest's record of its vector store: which backend, which files (FAISS
    for an index older than the record), or raise :class:`IndexCorrupt` for a malformed one."""
    record = manifest.get("vectors", FAISS_RECORD)
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


def write_index(index_dir: Path, manifest: dict, content: IndexContent,
                backend: VectorBackend | None = None) -> Path:
    """Write a new generation of the index and make it current, atomically.

    Takes the manifest (without ``files``, ``format_version``, ``dim`` and ``vectors``,
    which are filled in here), the content (passages with one unit vector each, their
    sentences, lexicon and background vectors) and the vector store to search them
    with (default: FAISS files). The caller must hold :func:`writer_lock`. Until the
    final rename of ``CURRENT`` the previous index stays current; a crash leaves at most
    a stray temporary directory, removed by the next write. Returns the new
    generation's directory.
    """
    backend = backend or vector_backend()
    passages = content.passages
    vectors = np.ascontiguousarray(content.vectors, dtype=np.float32)
    if vectors.shape[0] != len(passages) or len(content.sentence_spans) != len(passages):
        raise ValueError("one vector and one sentence list per passage are required")
    ensure_writable(index_dir)
    generation = f"gen-{time.time_ns()}-{os.getpid()}"
    # mkdtemp: made exclusively, mode 0700, so nothing can be planted in it before qa writes
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{generation}-", dir=index_dir))
    try:
        record = backend.write(vectors, tmp, generation)
        for name, array in ((VECTORS_NPY, vectors), (BACKGROUND, content.background),
                            (SENTENCES, content.sentence_vectors)):
            _save_npy(tmp / name, array)
        with open(tmp / LEXICON, "wb") as handle:
            np.savez(handle, **content.lexicon)
        doc_numbers = {doc["source"]: i for i, doc in enumerate(manifest["documents"])}
        with open(tmp / PASSAGES, "w", encoding="utf-8", newline="\n") as handle:  # line by line: no copy of it all
            for p, spans in zip(passages, content.sentence_spans):
                row = {"doc": doc_numbers[p.source], "start": p.start, "end": p.end, "text": p.text,
                       "sentences": [list(span) for span in spans],
                       **({"line": p.line} if p.line else {}), **({"page": p.page} if p.page else {})}
                handle.write(jsontext.dumps(row) + "\n")
        files = (*record["files"], *CORE_FILES)
        for name in files:
            with open(tmp / name, "rb+") as handle:
                os.fsync(handle.fileno())
        manifest = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "dim": int(vectors.shape[1]),
            "vectors": record,
            "files": {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in files},
        }
        manifest_bytes = jsontext.dumps(manifest, indent=1).encode("utf-8")
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        _write_file(tmp / MANIFEST, manifest_bytes)
        _write_file(tmp / MANIFEST_SHA, f"{manifest_sha}\n".encode())
        from qa.signing import sign

        _write_file(tmp / MANIFEST_SIG, f"{sign(manifest_bytes)}\n".encode())
        for entry in os.scandir(tmp):  # private as ssh's files: documents may be 0600
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o600)
        _fsync_dir(tmp)
        os.rename(tmp, index_dir / generation)
        _fsync_dir(index_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise IndexDiskFull() from None
        raise
    try:
        _swap_current(index_dir, generation, manifest_sha)
    except OSError as exc:  # CURRENT still names the previous generation: the new one goes
        if is_disk_full(exc) and not _names_current(index_dir, generation):
            _remove_entry(index_dir / generation)
            raise IndexDiskFull() from None
        raise
    _remove_old_generations(index_dir, generation)
    return index_dir / generation


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
    _fsync_dir(index_dir)


def _generation_time(name: str) -> int:
    """The time in a generation's name (``gen-<ns>-<pid>``), 0 if it has none."""
    parts = name.split("-")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def generations(index_dir: Path) -> list[str]:
    """Return the names of the generation directories in ``index_dir``, newest first.

    Newest by the time in the name (``gen-<ns>-<pid>``); none for a missing directory.
    What a damaged index is recovered from, and what clean-up chooses among.
    """
    try:
        found = [p.name for p in index_dir.glob("gen-*") if p.is_dir()]
    except OSError:
        return []
    return sorted(found, key=lambda name: (_generation_time(name), name), reverse=True)


@dataclass
class IntactGeneration:
    """A generation whose manifest can be trusted (see :func:`newest_intact_generation`).

    ``manifest`` is parsed (of this or an older format); ``snapshot`` is the whole
    generation, loaded and verified, when its data files are intact and of this format
    (else None: only its document list can be trusted).
    """

    generation: str
    manifest: dict
    manifest_sha: str
    snapshot: Snapshot | None
    signed: bool = False  # written by this user's qa (see qa.signing)


def _trusted_shas(index_dir: Path, generation: str) -> set[str]:
    """The checksums a generation's manifest may match: its own record, and ``CURRENT``'s
    when ``CURRENT`` names it. Empty for a generation written before qa recorded one."""
    shas = set()
    try:
        words = read_bounded(index_dir / generation / MANIFEST_SHA, MAX_SMALL_FILE_BYTES).decode("ascii").split()
        if len(words) == 1:
            shas.add(words[0])
        else:
            shas.add("unreadable")  # a damaged record trusts nothing
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError):
        shas.add("unreadable")
    try:
        current, sha = _read_current(index_dir)
        if current == generation:
            shas.add(sha)
    except StoreError:
        pass
    return shas


def _intact_manifest(index_dir: Path, generation: str, data: bytes | None = None) -> tuple[dict, str] | None:
    """Return a generation's manifest and its checksum if it passes :func:`read_index`'s
    manifest checks (checksum, JSON, shape, a format this qa knows), else None.
    ``data``: the manifest's bytes when already read (and checked for something else)."""
    try:
        data = read_bounded(index_dir / generation / MANIFEST, MAX_MANIFEST_BYTES) if data is None else data
    except OSError:
        return None
    sha = hashlib.sha256(data).hexdigest()
    trusted = _trusted_shas(index_dir, generation)
    if trusted and sha not in trusted:
        return None
    try:
        return _check_manifest(index_dir, data, sha), sha
    except IndexOldFormat as exc:
        return exc.manifest, sha
    except IndexCorrupt:
        return None


def newest_intact_generation(index_dir: Path, load: bool = True) -> IntactGeneration | None:
    """Return the newest generation in ``index_dir`` whose manifest can be trusted, or None.

    For an index whose ``CURRENT`` or current manifest is damaged: the document list
    (roots, exclusions, documents) of that generation is what the index is rebuilt
    from, instead of losing the library. A manifest is trusted when it matches the
    checksum recorded beside it (or ``CURRENT``'s, for the generation ``CURRENT``
    names), and is valid JSON of a known format; a generation of an older qa, with no
    record, is taken on the JSON checks alone. With ``load``, the generation's data
    files are verified and loaded too (``snapshot``), for their vectors to be reused.
    """
    for generation in generations(index_dir):
        found = _intact_manifest(index_dir, generation)
        if found is None:
            continue
        manifest, sha = found
        snapshot = None
        if load and manifest.get("format_version") == FORMAT_VERSION:
            try:
                snapshot = _read_generation(index_dir, generation, sha)
            except (StoreError, OSError):
                snapshot = None
        return IntactGeneration(generation, manifest, sha, snapshot, generation_signed(index_dir, generation))
    return None


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
    record = intact[0].get("vectors") if intact else None
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
    if current and (index_dir / current).is_dir() and read_manifest(index_dir) is not None:
        others = [p for p in index_dir.glob("gen-*") if p.name != current]
        if len(others) > GENERATIONS_KEPT - 1:
            _remove_old_generations(index_dir, current)
            return
    _remove_tmp(index_dir)


def _remove_tmp(index_dir: Path) -> None:
    for leftover in index_dir.glob(".tmp-*"):
        _remove_entry(leftover)


def _remove_entry(path: Path) -> None:
    """Delete a file or folder of the index directory; a symbolic link is deleted as a
    link, never followed (shutil.rmtree opens a link's target before refusing it)."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def ensure_writable(index_dir: Path) -> None:
    """Create ``index_dir`` if needed and check that files can be written in it.

    Raises :class:`StoreError` with a one-line reason otherwise ("... is not a
    directory" for a regular file in the way); :class:`IndexReadOnly` when the
    directory exists but the system refuses to create files in it.
    """
    blocker = _file_in_the_way(index_dir)
    if blocker is not None:
        raise _not_a_directory(index_dir, blocker, "write")
    try:
        index_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the probe exclusively (O_EXCL, O_NOFOLLOW) under a fresh name:
        # a link planted at a predictable ".tmp-probe-PID" truncated the file it named.
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=index_dir)
        os.close(fd)
        # a concurrent writer's clean-up of ".tmp-*" leftovers may have removed the
        # probe already; the directory was writable all the same.
        Path(probe).unlink(missing_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno in (errno.EEXIST, errno.ELOOP) and os.path.islink(index_dir):
            reason = "it is a symbolic link that leads nowhere (a loop, or a broken link)"
        message = f"cannot write the index directory {index_dir}: {reason}"
        if exc.errno in DISK_FULL_ERRNOS:
            raise IndexDiskFull() from None
        if exc.errno in READ_ONLY_ERRNOS and index_dir.is_dir():
            raise IndexReadOnly(message, reason) from None
        raise StoreError(message) from None


LOCK_POLL_SECONDS = 0.05
"""How often a writer waiting for the lock tries again."""


@contextmanager
def writer_lock(index_dir: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold the index's writer lock for the duration of the ``with`` block.

    The lock is an OS file lock (``flock``) on ``.lock``, released by the kernel when
    its holder dies, so a killed build never leaves the index locked. Waits up to
    ``timeout`` seconds for another writer, then raises :class:`IndexBusy`. The lock
    file is opened with ``O_NOFOLLOW`` and checked on the opened descriptor: a link or
    anything but a regular file at ``.lock`` is a one-line :class:`StoreError`, never
    followed (a check of the path before opening it by name left a moment in which a
    planted link was followed, and its target truncated).
    """
    import fcntl

    ensure_writable(index_dir)
    fd = _open_lock_file(index_dir / LOCK)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"another qa process is writing the index in {index_dir}; try again when it is done"
                    ) from None
                time.sleep(min(LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    """Open (creating it, mode 0600) the lock file at ``path``; return its descriptor.

    Never follows a link and never blocks (a FIFO is refused, not waited on); raises a
    one-line :class:`StoreError` for anything but a regular file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link (or a loop of them)
            raise StoreError(f"{path} is a symbolic link, not qa's lock file: remove it and try again") from None
        if exc.errno == errno.EISDIR:
            raise StoreError(f"{path} is not a regular file, not qa's lock file: remove it and try again") from None
        if exc.errno in DISK_FULL_ERRNOS:
            raise IndexDiskFull() from None
        raise StoreError(f"cannot use the lock file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device can't be locked: waits forever
        os.close(fd)
        raise StoreError(f"{path} is not a regular file, not qa's lock file: remove it and try again")
    return fd

