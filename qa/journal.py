"""Vectors embedded by an index build that has not finished yet, so that a rerun resumes.

Embedding is the slow part of indexing (hours for a large corpus on two cores). A
build writes every batch of vectors it embeds to a journal beside the index, keyed
by a hash of the text embedded. A build that is interrupted (Ctrl-C, ``kill -9``,
power loss) leaves the index as it was; the next run finds the journal and embeds
only what is not in it. A successful build deletes its journal.

Each batch is one ``.npz`` file (plain arrays, no pickles) named after its own
SHA-256 and written atomically, so a crash leaves whole batches or none, and a
damaged batch is detected and ignored: it costs time, never correctness.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

KEY_BYTES = 16
PREFIX = ".journal-"


def text_key(text: str) -> bytes:
    """Return the journal key of a text: a 16-byte BLAKE2b digest of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest()


def journal_dir(index_dir: Path, model_name: str, probe: Sequence[float] | np.ndarray) -> Path:
    """Return the journal directory of ``index_dir`` for one model.

    The name is derived from the model's name and probe vector (to 6 decimals, as
    the manifest stores it), so vectors of another model, or of the same name with
    other weights, are never reused, and a finished build finds its own journal.
    """
    rounded = ",".join(f"{round(float(x), 6):.6f}" for x in probe)
    digest = hashlib.sha256(f"{model_name}\0{rounded}".encode()).hexdigest()
    return index_dir / f"{PREFIX}{digest[:20]}"


def own_directory(path: Path) -> bool:
    """Return whether ``path`` is a real directory of this user, not a symbolic link.

    A link planted at a journal's name inside a writable index directory made qa
    write batches into, and delete batches from, the folder it pointed at.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def remove_journals(index_dir: Path, journal: Path) -> None:
    """Delete ``journal`` once its build is current; other models' journals stay to resume.
    A link at its name is removed as a link, never followed."""
    if journal.parent == index_dir and journal.name.startswith(PREFIX):
        if own_directory(journal):
            shutil.rmtree(journal, ignore_errors=True)
        elif os.path.islink(journal):
            journal.unlink(missing_ok=True)


class EmbeddingJournal:
    """The batches of vectors a build has embedded so far, on disk.

    Nothing is held in memory: :meth:`batches` reads them back one at a time.
    """

    def __init__(self, directory: Path, dim: int):
        """Open the journal in ``directory`` (created on the first :meth:`add`) for ``dim``-float vectors."""
        self.directory = directory
        self.dim = dim

    def batches(self) -> Iterator[tuple[list[bytes], np.ndarray]]:
        """Yield ``(keys, vectors)`` of every intact batch; damaged or foreign ones are deleted."""
        for path in sorted(self.directory.glob("batch-*.npz")) if own_directory(self.directory) else ():
            batch = self._load(path)
            if batch is None:
                path.unlink(missing_ok=True)
            else:
                yield batch

    def _load(self, path: Path) -> tuple[list[bytes], np.ndarray] | None:
        try:
            with open(path, "rb") as handle:
                if hashlib.file_digest(handle, "sha256").hexdigest()[:32] != path.stem.removeprefix("batch-"):
                    return None
            with np.load(path, allow_pickle=False) as arrays:
                keys, vectors = arrays["keys"], arrays["vectors"]
        except Exception:  # noqa: BLE001 - any unreadable batch is only a lost cache entry
            return None
        if (
            keys.dtype != np.uint8 or vectors.dtype != np.float32
            or keys.ndim != 2 or keys.shape[1] != KEY_BYTES
            or vectors.shape != (keys.shape[0], self.dim)
        ):
            return None
        return [key.tobytes() for key in keys], vectors

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Record a batch of vectors durably before the build moves on.

        Takes the texts' keys and their ``(len(keys), dim)`` vectors. A failure to
        write (disk full, read-only) only means a rerun would embed them again.
        """
        if not keys:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            if not own_directory(self.directory):
                return  # a link or someone else's folder: embed again rather than write through it
            fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.directory)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, keys=key_array, vectors=vectors)
                handle.flush()
                os.fsync(handle.fileno())
            with open(tmp, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()[:32]
            os.replace(tmp, self.directory / f"batch-{digest}.npz")
        except OSError:
            pass
