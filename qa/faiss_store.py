"""The default vector store: a FAISS file beside the generation's other files.

The kind of FAISS index (exact, or the approximate scan-and-refine) is chosen by size in
:mod:`qa.ann`. A small index is scored exactly from the generation's ``vectors.npy`` and
never needs its FAISS file, so the file is read on the first search only, and checked
against its checksum then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from qa import ann
from qa.vectorstore import register_vector_backend

FAISS_FILE = "vectors.faiss"


class FaissStore:
    """The FAISS index of one generation, read on first use."""

    def __init__(self, directory: Path, vectors: np.ndarray, verify: Callable[[str], None], dim: int):
        self.directory = directory
        self.vectors = vectors
        self._verify = verify
        self._dim = dim
        self._index = None

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def faiss_index(self):
        """The FAISS index, read (and its checksum checked) on first use.

        When the generation has been deleted since it was read (two later writes), an
        exact index is rebuilt from the verified ``vectors``: it holds the same vectors.
        An approximate index is read when the generation is opened, so it can't go
        missing here.
        """
        if self._index is None:
            from qa.store import IndexCorrupt

            try:
                self._index = self._read(verify=True)
            except IndexCorrupt:
                if (self.directory / FAISS_FILE).exists() or ann.index_kind(len(self)) != ann.FLAT:
                    raise
                self._index = ann.build_vector_index(np.asarray(self.vectors))
        return self._index

    def load_now(self) -> None:
        """Read the FAISS file now (already verified), while the generation is surely there."""
        self._index = self._read(verify=False)

    def _read(self, verify: bool):
        from qa.store import IndexCorrupt

        damaged = f"index at {self.directory.parent} is damaged"
        try:
            if verify:
                self._verify(FAISS_FILE)
            index = ann.read_vector_index(self.directory / FAISS_FILE)
        except IndexCorrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - FAISS reports a broken file as RuntimeError, or worse
            raise IndexCorrupt(f"{damaged}: {FAISS_FILE}: {type(exc).__name__}") from None
        if index.ntotal != len(self) or index.d != self._dim:
            raise IndexCorrupt(f"{damaged}: its files disagree with each other")
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)`` of the ``k`` closest passages to each query row (see :func:`qa.ann.search`)."""
        return ann.search(self.faiss_index, queries, k)


class FaissBackend:
    """Writes, opens and drops FAISS files of generations (see :class:`qa.vectorstore.VectorBackend`)."""

    name = "faiss"

    def __init__(self, uri: str = "faiss"):
        self.uri = uri

    def write(self, vectors: np.ndarray, directory: Path, generation: str) -> dict:
        ann.write_vector_index(ann.build_vector_index(vectors, exact_max=ann.EXACT_MAX), directory / FAISS_FILE)
        return {"store": self.name, "files": [FAISS_FILE]}

    def open(self, record: dict, directory: Path, vectors: np.ndarray, verify: Callable[[str], None]) -> FaissStore:
        store = FaissStore(directory, vectors, verify, vectors.shape[1] if vectors.ndim == 2 else 0)
        if len(vectors) > ann.EXACT_MAX:  # searched through FAISS: read it now, while the generation is current
            store.load_now()
        return store

    def drop(self, record: dict) -> None:
        """Nothing to do: the file goes with its generation's directory."""


register_vector_backend("faiss", FaissBackend)
