"""Passage vectors in Milvus: embedded Milvus Lite (``milvus:PATH.db``) or a server (``milvus://HOST:PORT``, ``http(s)://...``).

One code path, through ``pymilvus``'s ``MilvusClient``, serves a local Milvus Lite file
and a Milvus server or cluster; only the vectors and their search live there. The
manifest, passages and exact vectors stay in qa's index directory.

Each generation gets a collection of its own, named after the index directory and the
generation, written and flushed before the generation becomes current: a crash before
``CURRENT`` is swapped leaves at most an orphan collection, never a changed one. The
collection of a generation no longer kept is dropped after the swap (:mod:`qa.store`).

A server token, if any, comes from ``QA_MILVUS_TOKEN``. ``pymilvus`` (and
``milvus-lite``) are the optional extra ``qa[milvus]``, imported on first use only.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
from pathlib import Path
from typing import Callable

import numpy as np

from qa import ann
from qa.vectorstore import VectorStoreError, register_vector_backend

INSTALL_HINT = "the Milvus vector store needs pymilvus: pip install 'qa[milvus]'"
TOKEN_ENV = "QA_MILVUS_TOKEN"
CONNECT_TIMEOUT = 5.0
INSERT_ROWS = 10_000  # rows per insert call: ~15 MB of 384-float vectors, under gRPC's 64 MB
MAX_LIMIT = 16_384  # Milvus's largest top-k

_clients: dict[str, object] = {}


def client_uri(uri: str) -> str:
    """Return the URI ``MilvusClient`` takes for a store URI.

    ``milvus:PATH.db`` -> the absolute path of the Milvus Lite file; ``milvus://HOST:PORT``
    -> ``http://HOST:PORT``; ``http(s)://...`` as given. Raises :class:`VectorStoreError`
    for anything else.
    """
    if uri.startswith("milvus://"):
        return "http://" + uri.removeprefix("milvus://")
    if uri.startswith(("http://", "https://")):
        return uri
    if uri.startswith("milvus:"):
        path = uri.removeprefix("milvus:")
        if not path.endswith(".db"):
            raise VectorStoreError(f"a Milvus Lite store is a .db file: milvus:PATH.db, not {uri!r}")
        return str(Path(path).expanduser().resolve())
    raise VectorStoreError(f"not a Milvus store URI: {uri!r} (milvus:PATH.db, milvus://HOST:PORT, http(s)://...)")


def canonical_uri(uri: str) -> str:
    """Return ``uri`` as the manifest records it: a Milvus Lite file by its absolute path."""
    target = client_uri(uri)
    return f"milvus:{target}" if target.endswith(".db") and not target.startswith("http") else uri


def _check_reachable(target: str, uri: str) -> None:
    """Fail in seconds, naming ``uri``, when no server listens at ``target`` (pymilvus retries for long)."""
    match = re.fullmatch(r"https?://\[?([^/\]]+?)\]?(?::(\d+))?(/.*)?", target)
    if not match:
        return
    port = int(match[2]) if match[2] else (443 if target.startswith("https") else 19530)
    try:
        socket.create_connection((match[1], port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise VectorStoreError(f"can't reach the Milvus server at '{uri}': {exc.strerror or exc}") from None


def connect(uri: str):
    """Return a ``MilvusClient`` for a store URI, one per URI per process.

    Raises :class:`VectorStoreError`, one line naming the URI, when pymilvus is missing,
    the server can't be reached, or Milvus Lite can't open the file.
    """
    target = client_uri(uri)
    if target in _clients:
        return _clients[target]
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise VectorStoreError(INSTALL_HINT) from None
    _check_reachable(target, uri)
    if not target.startswith("http"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(uri=target, token=os.environ.get(TOKEN_ENV, ""), timeout=CONNECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException, ConnectionError, RuntimeError...
        raise VectorStoreError(f"can't open the Milvus store '{uri}': {_first_line(exc)}") from None
    _clients[target] = client
    return client


def close_clients() -> None:
    """Close every client this process opened, and stop the Milvus Lite servers it started.

    Milvus Lite serves a ``.db`` file from a thread of the one process that holds its
    lock; another process (the next ``qa`` command, a test's check) can open the file
    only once that server is stopped.
    """
    while _clients:
        target, client = _clients.popitem()
        try:
            client.close()
            if not target.startswith("http"):
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(target)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def collection_name(index_dir: Path, generation: str) -> str:
    """Return the collection of one generation of the index in ``index_dir``: unique per index and generation."""
    digest = hashlib.sha256(str(index_dir.resolve()).encode()).hexdigest()[:12]
    return f"qa_{digest}_{re.sub(r'[^0-9A-Za-z_]', '_', generation)}"


def index_plan(n: int, exact_max: int | None = None) -> dict:
    """Return how a collection of ``n`` vectors is indexed and searched.

    Up to :data:`qa.ann.EXACT_MAX` vectors (FAISS's exact limit too) a FLAT index:
    exact. Beyond, IVF_FLAT with ``4 * sqrt(n)`` lists, of which a sixteenth is
    scanned per query (recall@10 measured by ``bench/scale_out.py``).
    """
    exact_max = ann.EXACT_MAX if exact_max is None else exact_max
    if n <= exact_max:
        return {"index": "FLAT", "params": {}, "search": {}}
    nlist = max(1, min(65_536, int(4 * math.sqrt(n))))
    return {"index": "IVF_FLAT", "params": {"nlist": nlist}, "search": {"nprobe": max(1, min(nlist, nlist // 16 + 8))}}


class MilvusStore:
    """The vectors of one generation in a Milvus collection; connects on the first search.

    An index of up to :data:`qa.ann.EXACT_MAX` passages is scored exactly from its
    ``vectors.npy`` by the retriever and never needs to connect.
    """

    def __init__(self, record: dict, directory: Path):
        self.record = record
        self.directory = directory
        self._checked = False

    def __len__(self) -> int:
        return int(self.record["count"])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)``: inner products and passage numbers of the ``k`` closest passages per query."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.record["dim"])
        k = min(k, len(self), MAX_LIMIT)
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
        client = connect(self.record["uri"])
        name = self.record["collection"]
        if not self._checked:
            self._check(client, name)
        try:
            results = client.search(name, data=list(queries), limit=k, anns_field="vector",
                                    search_params={"metric_type": "IP", "params": self.record.get("search", {})})
        except Exception as exc:  # noqa: BLE001 - a server that went away mid-session
            raise VectorStoreError(f"Milvus store '{self.record['uri']}' failed to search: {_first_line(exc)}") from None
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, hits in enumerate(results):
            for column, hit in enumerate(hits[:k]):
                scores[row, column] = hit["distance"]
                ids[row, column] = hit["id"]
        return scores, ids

    def _check(self, client, name: str) -> None:
        from qa.store import IndexCorrupt

        if not client.has_collection(name):
            raise IndexCorrupt(f"index at {self.directory.parent} is damaged: its Milvus collection {name} "
                               f"is missing from '{self.record['uri']}' (qa index --replace PATHS rebuilds it)")
        client.load_collection(name)
        self._checked = True


def _drop_orphans(client, index_dir: Path) -> None:
    """Drop this index's collections whose generation directory is gone: those of writes
    killed before their swap. The caller holds the index's writer lock."""
    prefix = collection_name(index_dir, "")
    kept = {collection_name(index_dir, path.name) for path in index_dir.glob("gen-*")}
    for name in client.list_collections():
        if name.startswith(prefix) and name not in kept:
            client.drop_collection(name)


class MilvusBackend:
    """Writes, opens and drops the Milvus collections of generations (see :class:`qa.vectorstore.VectorBackend`)."""

    name = "milvus"

    def __init__(self, uri: str):
        self.uri = canonical_uri(uri)

    def check(self) -> None:
        """Connect now, so that a store that can't be used fails before any embedding, not after it.

        The connection is closed again: one left idle through hours of embedding is
        dropped by the server (gRPC's "too many pings"); :meth:`write` opens its own.
        """
        connect(self.uri)
        close_clients()

    def write(self, vectors: np.ndarray, directory: Path, generation: str) -> dict:
        """Write ``vectors`` into a new collection for ``generation``, flushed, and return its record."""
        from pymilvus import DataType, MilvusClient

        client = connect(self.uri)
        n, dim = vectors.shape
        name = collection_name(directory.parent, generation)
        plan = index_plan(n)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=plan["index"], metric_type="IP", params=plan["params"])
        try:
            _drop_orphans(client, directory.parent)
            client.create_collection(name, schema=schema)
            for start in range(0, n, INSERT_ROWS):
                rows = vectors[start : start + INSERT_ROWS]
                client.insert(name, [{"id": start + i, "vector": row} for i, row in enumerate(rows)])
            client.flush(name)
            client.create_index(name, index_params)
            client.load_collection(name)
        except Exception as exc:  # noqa: BLE001 - out of space, server gone...: nothing current was touched
            raise VectorStoreError(f"can't write to the Milvus store '{self.uri}': {_first_line(exc)}") from None
        return {"store": self.name, "uri": self.uri, "collection": name, "count": int(n), "dim": int(dim),
                "index": plan["index"], "search": plan["search"], "files": []}

    def open(self, record: dict, directory: Path, vectors: np.ndarray, verify: Callable[[str], None]) -> MilvusStore:
        """Open a generation's collection for searching (the connection is made on the first search)."""
        from qa.store import IndexCorrupt

        if (not isinstance(record.get("collection"), str) or not isinstance(record.get("count"), int)
                or record["count"] != len(vectors) or record.get("dim") != (vectors.shape[1] if vectors.ndim == 2 else 0)
                or not isinstance(record.get("search", {}), dict)):
            raise IndexCorrupt(f"index at {directory.parent} is damaged: its Milvus record disagrees with its files")
        return MilvusStore(record, directory)

    def drop(self, record: dict) -> None:
        """Drop the collection of a generation no longer kept."""
        client = connect(record["uri"])
        if client.has_collection(record["collection"]):
            client.drop_collection(record["collection"])


for _scheme in ("milvus", "http", "https"):
    register_vector_backend(_scheme, MilvusBackend)
