"""The seam between an index and the engine that searches its passage vectors.

An index generation keeps its passages, their exact vectors (``vectors.npy``, for
re-scoring) and everything else in its own directory (:mod:`qa.store`). The
nearest-neighbour search over the passage vectors is a :class:`VectorStore`, made by a
:class:`VectorBackend` chosen by a URI:

``faiss`` (the default)
    a FAISS file in the generation's directory (:mod:`qa.faiss_store`);
``milvus:PATH.db``, ``milvus://HOST:PORT``, ``http(s)://...``
    registered by the module that implements them (another engine never needs
    :mod:`qa.store` to know it).

Crash safety stays :mod:`qa.store`'s: a backend writes the vectors of a new generation
while that generation is not yet current, never touching the current one's; the
manifest keeps the backend's record of them (file names for FAISS, a collection for a
server); swapping ``CURRENT`` is the commit point; the vectors of a generation are
dropped only once it is no longer kept. Every generation is written whole rather than
by adding to and removing from the previous one's vectors: a generation is immutable,
and a store seeded from another generation and then edited would be a second copy of
that generation's state to keep consistent across a crash. Embedding, the expensive
part, is incremental either way (unchanged passages keep their vectors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

DEFAULT_STORE = "faiss"
STORE_ENV = "QA_STORE"


class VectorStoreError(Exception):
    """A vector store can't be used (unreachable server, unknown URI); the message is one line."""


class VectorStore(Protocol):
    """Nearest-neighbour search over the passage vectors of one generation: row ``i`` is passage ``i``."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)``, each ``(len(queries), min(k, len(self)))``: for each query row
        (a unit float32 vector), the inner products of the closest passages (cosines;
        approximate from an approximate store), best first, and their passage numbers."""

    def __len__(self) -> int:
        """The number of passage vectors."""


class VectorBackend(Protocol):
    """A kind of vector store: writes a generation's vectors, opens them, drops them."""

    name: str

    def write(self, vectors: np.ndarray, directory: Path, generation: str) -> dict:
        """Store ``vectors`` (unit float32 rows, one per passage) for a new generation.

        ``directory`` is where the generation's files are being written (not yet
        current); ``generation`` is its name, unique to this index. Returns the JSON
        record the manifest keeps: ``{"store": name, "files": [...], ...}``. Files it
        names are in ``directory`` and are checksummed with the generation's others.
        """

    def open(self, record: dict, directory: Path, vectors: np.ndarray,
             verify: Callable[[str], None]) -> VectorStore:
        """Open the vectors a generation's ``record`` describes, for searching.

        ``vectors`` are the generation's exact vectors (verified), which a store may use
        instead of its own copy; ``verify(name)`` checks one of its files against the
        manifest's checksum again (for a file read later than the rest) and raises
        :class:`qa.store.IndexCorrupt` when it doesn't match.
        """

    def drop(self, record: dict) -> None:
        """Free what a generation no longer kept holds outside its directory (nothing, for files)."""


_BACKENDS: dict[str, Callable[[str], VectorBackend]] = {}


def register_vector_backend(scheme: str, factory: Callable[[str], VectorBackend]) -> None:
    """Make URIs of ``scheme`` (``faiss``, ``milvus``, ``http``...) open with ``factory(uri)``."""
    _BACKENDS[scheme] = factory


def uri_scheme(uri: str) -> str:
    """Return the scheme of a store URI: ``faiss`` -> ``faiss``, ``milvus:x.db`` -> ``milvus``."""
    return uri.split(":", 1)[0].lower()


def vector_backend(uri: str | None = None) -> VectorBackend:
    """Return the backend for a store URI (None: the default, FAISS files).

    Raises :class:`VectorStoreError` for a URI no backend is registered for.
    """
    uri = uri or DEFAULT_STORE
    if not _BACKENDS:
        import qa.faiss_store  # noqa: F401 - registers "faiss"
    factory = _BACKENDS.get(uri_scheme(uri))
    if factory is None:
        known = ", ".join(sorted(_BACKENDS))
        raise VectorStoreError(f"unknown vector store {uri!r} (known: {known})")
    return factory(uri)


def backend_for_record(record: dict | None) -> VectorBackend:
    """Return the backend that wrote a generation's vector record (an index older than the
    record is FAISS)."""
    return vector_backend((record or {}).get("uri") or (record or {}).get("store") or DEFAULT_STORE)
