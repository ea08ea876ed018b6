"""The VectorStore contract, checked against brute-force numpy search for every registered store.

A store module adds itself to :data:`STORE_URIS` (a URI factory taking a temporary
folder) when its engine can run here; every test below then runs against it too.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from qa import ann
from qa.documents import Passage
from qa.index_read import _vector_record
from qa.store import FAISS_RECORD, IndexContent, IndexCorrupt, read_index, write_index
from qa.vectorstore import VectorStoreError, backend_for_record, register_vector_backend, uri_scheme, vector_backend

STORE_URIS: dict[str, Callable[[Path], str]] = {"faiss": lambda tmp: "faiss"}
"""Every store the contract runs against, by name: a function of a temporary folder giving its URI."""
if importlib.util.find_spec("milvus_lite") is not None:  # bin/setup installs qa[milvus]
    STORE_URIS["milvus-lite"] = lambda tmp: f"milvus:{tmp}/vectors.db"

D = 16


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


@pytest.fixture(params=sorted(STORE_URIS))
def backend(request, tmp_path):
    yield vector_backend(STORE_URIS[request.param](tmp_path))
    if request.param == "milvus-lite":
        from qa.milvus_store import close_clients

        close_clients()


def written(backend, vectors: np.ndarray, tmp_path: Path, generation: str = "gen-1-1"):
    directory = tmp_path / generation
    directory.mkdir()
    record = backend.write(vectors, directory, generation)
    json.dumps(record)  # the manifest keeps it as JSON
    return record, backend.open(record, directory, vectors, lambda name: None)


@pytest.mark.parametrize("n, k", [(1, 1), (50, 5), (200, 10), (200, 500)])
def test_search_is_brute_force(backend, tmp_path, n, k):
    vectors, queries = unit_rows(n), unit_rows(7, seed=1)
    _, store = written(backend, vectors, tmp_path)
    assert len(store) == n
    scores, ids = store.search(queries, k)
    want_scores, want_ids = brute_force(vectors, queries, min(k, n))
    assert scores.shape == ids.shape == (7, min(k, n))
    assert np.allclose(scores, want_scores, atol=1e-5)
    assert np.allclose(np.take_along_axis(queries @ vectors.T, ids, axis=1), want_scores, atol=1e-5)  # ties may swap


def test_approximate_search_keeps_most_of_the_exact_top_10(backend, tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "EXACT_MAX", 0)
    vectors, queries = unit_rows(3_000), unit_rows(20, seed=2)
    _, store = written(backend, vectors, tmp_path)
    _, ids = store.search(queries, 10)
    _, exact = brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    assert recall >= 0.9


def test_an_empty_store_finds_nothing(backend, tmp_path):
    _, store = written(backend, np.zeros((0, D), np.float32), tmp_path)
    scores, ids = store.search(unit_rows(2), 5)
    assert scores.shape == ids.shape == (2, 0)


def test_generations_are_independent_and_drop_leaves_the_other(backend, tmp_path):
    a, b = unit_rows(30, seed=3), unit_rows(40, seed=4)
    record_a, _ = written(backend, a, tmp_path, "gen-1-1")
    _, store_b = written(backend, b, tmp_path, "gen-2-1")
    backend.drop(record_a)
    scores, _ = store_b.search(b[:3], 1)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5) and len(store_b) == 40


def passages_of(n: int) -> list[Passage]:
    return [Passage(f"passage {i}", "/docs/a.txt", i * 10, i * 10 + 9) for i in range(n)]


def content_of(vectors: np.ndarray) -> IndexContent:
    n = len(vectors)
    return IndexContent(passages_of(n), vectors, [[] for _ in range(n)], np.zeros((0, D), np.float32),
                        {}, unit_rows(3, seed=9))


def test_an_index_written_with_a_store_searches_through_it(backend, tmp_path):
    vectors = unit_rows(60, seed=5)
    manifest = {"documents": [{"source": "/docs/a.txt"}]}
    write_index(tmp_path / "index", manifest, content_of(vectors), backend)
    snapshot = read_index(tmp_path / "index")
    assert snapshot.manifest.to_json()["vectors"]["store"] == backend.name
    scores, ids = snapshot.search(vectors[:4], 3)
    assert list(ids[:, 0]) == [0, 1, 2, 3] and np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_an_index_older_than_the_vector_record_is_faiss():
    assert _vector_record(None, "damaged") == FAISS_RECORD  # a manifest without a vectors record
    assert backend_for_record(None).name == "faiss"


@pytest.mark.parametrize("record", [
    {"store": "faiss", "files": ["../outside"]}, {"store": "faiss", "files": ["passages.jsonl"]},
    {"store": 5, "files": []}, {"store": "faiss"}, ["faiss"], {"store": "nosuch", "files": []},
])
def test_a_malformed_vector_record_is_a_damaged_index(record):
    with pytest.raises(IndexCorrupt, match="damaged"):
        _vector_record(record, "index at x is damaged")


def test_an_unknown_store_uri_is_a_one_line_error():
    with pytest.raises(VectorStoreError, match="unknown vector store 'nosuch:x'") as info:
        vector_backend("nosuch:x")
    assert "\n" not in str(info.value)


def test_a_store_registers_by_uri_scheme(monkeypatch):
    from qa import vectorstore

    monkeypatch.setattr(vectorstore, "_BACKENDS", dict(vectorstore._BACKENDS))

    class Marker:
        name = "marker"

        def __init__(self, uri):
            self.uri = uri

    register_vector_backend("marker", Marker)
    assert vector_backend("marker:/some/where.db").uri == "marker:/some/where.db"
    assert uri_scheme("milvus://host:19530") == "milvus" and uri_scheme("FAISS") == "faiss"
