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

import importlib
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from qa.manifest import Manifest
from qa.paths import STORE_ENV  # noqa: F401 - the variable --store reads

DEFAULT_STORE = "faiss"


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
_MODULES = {"faiss": "qa.faiss_store", "milvus": "qa.milvus_store", "http": "qa.milvus_store",
            "https": "qa.milvus_store"}
"""The module that registers each built-in scheme, imported when a URI of it is first used."""


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
    scheme = uri_scheme(uri)
    if scheme not in _BACKENDS and scheme in _MODULES:
        importlib.import_module(_MODULES[scheme])  # registers the scheme; its engine is imported on use
    factory = _BACKENDS.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_BACKENDS))
        raise VectorStoreError(f"unknown vector store {uri!r} (known: {known})")
    return factory(uri)


def backend_for_record(record: dict | None) -> VectorBackend:
    """Return the backend that wrote a generation's vector record (an index older than the
    record is FAISS)."""
    return vector_backend((record or {}).get("uri") or (record or {}).get("store") or DEFAULT_STORE)


def store_uri(backend: VectorBackend) -> str:
    """Return the URI that names ``backend``'s store (``faiss``, ``milvus:/abs/path.db``, ...)."""
    return getattr(backend, "uri", None) or backend.name


def recorded_store_uri(manifest: Manifest) -> str:
    """Return the URI of the store a manifest's vectors are in (``faiss`` for an index older than the record)."""
    return store_uri(backend_for_record(manifest.vectors))
