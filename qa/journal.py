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
from pathlib import Path
from typing import Sequence

import numpy as np

KEY_BYTES = 16
PREFIX = ".journal-"


def text_key(text: str) -> bytes:
    """Return the journal key of a text: a 16-byte BLAKE2b digest of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest()


def journal_dir(index_dir: Path, model_name: str, probe: np.ndarray) -> Path:
    """Return the journal directory of ``index_dir`` for one model.

    The name is derived from the model's name and probe vector, so vectors of
    another model (or of the same name with other weights) are never reused.
    """
    digest = hashlib.sha256(model_name.encode() + b"\0" + np.asarray(probe, np.float32).tobytes()).hexdigest()
    return index_dir / f"{PREFIX}{digest[:20]}"


def remove_journals(index_dir: Path, keep: Path | None = None) -> None:
    """Delete every journal in ``index_dir`` except ``keep`` (a finished build's clean-up)."""
    for path in index_dir.glob(f"{PREFIX}*"):
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)


class EmbeddingJournal:
    """The vectors a build has embedded so far, by text key, on disk and in memory."""

    def __init__(self, directory: Path, dim: int):
        """Open (or prepare) the journal in ``directory`` for vectors of ``dim`` floats.

        Loads every intact batch already there; damaged or foreign batches are removed.
        """
        self.directory = directory
        self.dim = dim
        self._vectors: dict[bytes, np.ndarray] = {}
        for path in sorted(directory.glob("batch-*.npz")) if directory.is_dir() else ():
            if not self._load(path):
                path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._vectors)

    def _load(self, path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                if hashlib.file_digest(handle, "sha256").hexdigest()[:32] != path.stem.removeprefix("batch-"):
                    return False
            with np.load(path, allow_pickle=False) as arrays:
                keys, vectors = arrays["keys"], arrays["vectors"]
        except Exception:  # noqa: BLE001 - any unreadable batch is only a lost cache entry
            return False
        if (
            keys.dtype != np.uint8 or vectors.dtype != np.float32
            or keys.ndim != 2 or keys.shape[1] != KEY_BYTES
            or vectors.shape != (keys.shape[0], self.dim)
        ):
            return False
        for key, vector in zip(keys, vectors):
            self._vectors[key.tobytes()] = vector
        return True

    def get(self, key: bytes) -> np.ndarray | None:
        """Return the journalled vector of a text key, or None."""
        return self._vectors.get(key)

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Record a batch of vectors, durably, before the build moves on.

        Takes the texts' keys and their ``(len(keys), dim)`` vectors. A failure to
        write (disk full, read-only) only means a rerun would embed them again.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for key, vector in zip(keys, vectors):
            self._vectors[key] = vector
        if not keys:
            return
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".tmp-{os.getpid()}.npz"
            with open(tmp, "wb") as handle:
                np.savez(handle, keys=key_array, vectors=vectors)
                handle.flush()
                os.fsync(handle.fileno())
            with open(tmp, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()[:32]
            os.replace(tmp, self.directory / f"batch-{digest}.npz")
        except OSError:
            pass
