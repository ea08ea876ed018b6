"""The Milvus vector store through qa's commands, against Milvus Lite (a local file): index, ask, move,
generations, one-line errors, and the kill -9 test (the VectorStore contract itself is tests/test_vectorstore.py)."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE_MODEL
from qa import ann
from qa.cli import app
from qa.store import read_index

pytest.importorskip("milvus_lite")
from qa.milvus_store import close_clients, connect  # noqa: E402
from test_crash import assert_clean, qa_cmd, qa_env  # noqa: E402

pytestmark = pytest.mark.slow  # Milvus Lite starts a server per file: about a second each


@pytest.fixture(autouse=True)
def closed_clients():
    """Close this process's Milvus Lite clients after each test, so that no server outlives its file."""
    yield
    close_clients()


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "animals.txt").write_text("The zebra lives in Africa.\n\nPenguins live in Antarctica.\n", encoding="utf-8")
    (docs / "drones.txt").write_text("Russia imported Shahed drones.\n\nThe ferry sails at noon.\n", encoding="utf-8")
    return docs


def collections(db: Path) -> list[str]:
    names = [n for n in connect(f"milvus:{db}").list_collections() if n.startswith("qa_")]
    close_clients()
    return names


def test_index_and_ask_through_milvus_lite(tmp_path, fake_model, monkeypatch):
    monkeypatch.setattr(ann, "EXACT_MAX", 0)  # search through the store, not the exact scan of small indexes
    db, docs = tmp_path / "vectors.db", corpus(tmp_path)
    result = invoke("index", "--model", FAKE_MODEL, "--store", f"milvus:{db}", str(docs))
    assert result.exit_code == 0, result.output
    record = read_index(tmp_path / "index").manifest.to_json()["vectors"]
    assert record["store"] == "milvus" and record["uri"] == f"milvus:{db.resolve()}" and record["count"] == 4
    result = invoke("ask", "--json", "--store", f"milvus:{db}", "Which drones did Russia import?")
    assert result.exit_code == 0, result.output
    assert "Shahed" in json.loads(result.output)["passages"][0]["text"]


def test_ask_with_the_store_from_qa_store(tmp_path, fake_model, monkeypatch):
    db = tmp_path / "vectors.db"
    monkeypatch.setenv("QA_STORE", f"milvus:{db}")
    assert invoke("index", "--model", FAKE_MODEL, str(corpus(tmp_path))).exit_code == 0
    assert read_index(tmp_path / "index").manifest.to_json()["vectors"]["store"] == "milvus"
    assert invoke("sources").exit_code == 0


def test_each_generation_has_its_collection_and_old_ones_are_dropped(tmp_path, fake_model):
    db, docs = tmp_path / "vectors.db", corpus(tmp_path)
    names = []
    for i in range(4):
        (docs / f"more-{i}.txt").write_text(f"Note {i} about the harbour.\n", encoding="utf-8")
        assert invoke("index", "--model", FAKE_MODEL, "--store", f"milvus:{db}", str(docs)).exit_code == 0
        names.append(read_index(tmp_path / "index").manifest.to_json()["vectors"]["collection"])
    assert len(set(names)) == 4
    kept = collections(db)
    assert names[-1] in kept and names[0] not in kept and len(kept) <= 2  # the current and the previous one


def test_naming_another_store_moves_the_vectors_there(tmp_path, fake_model, monkeypatch):
    monkeypatch.setattr(ann, "EXACT_MAX", 0)
    db, docs = tmp_path / "vectors.db", corpus(tmp_path)
    assert invoke("index", "--model", FAKE_MODEL, str(docs)).exit_code == 0
    before = read_index(tmp_path / "index")
    assert before.manifest.to_json()["vectors"]["store"] == "faiss"
    result = invoke("ask", "--store", f"milvus:{db}", "zebra")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: the index in {tmp_path / 'index'} keeps its vectors in 'faiss', not 'milvus:{db}'; "
        f"move them with: qa index --store milvus:{db}"]
    assert invoke("index", "--store", f"milvus:{db}").exit_code == 0  # nothing changed but the store
    after = read_index(tmp_path / "index")
    assert after.manifest.to_json()["vectors"]["store"] == "milvus"
    np.testing.assert_array_equal(before.content.vectors, after.content.vectors)
    _, ids = after.search(after.content.vectors, 1)
    assert list(ids[:, 0]) == list(range(len(after.passages)))


def test_an_unreachable_server_is_one_line_in_seconds(tmp_path, fake_model):
    started = time.perf_counter()
    result = invoke("index", "--model", FAKE_MODEL, "--store", "milvus://127.0.0.1:1", str(corpus(tmp_path)))
    assert time.perf_counter() - started < 10
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: can't reach the Milvus server at 'milvus://127.0.0.1:1': Connection refused"]
    assert not fake_model.embedded  # said before any embedding
    assert not list((tmp_path / "index").glob("gen-*"))


def test_without_pymilvus_the_store_names_the_extra(tmp_path, fake_model, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pymilvus(name, *args, **kwargs):
        if name == "pymilvus" or name.startswith("pymilvus."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pymilvus)
    result = invoke("index", "--model", FAKE_MODEL, "--store", f"milvus:{tmp_path / 'v.db'}", str(corpus(tmp_path)))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: the Milvus vector store needs pymilvus: pip install 'qa[milvus]'"]


# --------------------------------------------------------------------------- kill -9


def digest(index_dir: Path) -> str:
    """Load the index and search every passage vector through Milvus: each must find itself (or its twin) first."""
    snapshot = read_index(index_dir)
    vectors = snapshot.content.vectors
    scores, ids = snapshot.vector_store.search(vectors, 1)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5) and np.allclose(np.sum(vectors[ids[:, 0]] * vectors, axis=1), 1.0, atol=1e-5)
    close_clients()
    h = hashlib.sha256()
    for p in snapshot.passages:
        h.update(json.dumps([p.text, p.source, p.start, p.end]).encode())
    h.update(np.ascontiguousarray(snapshot.content.vectors).tobytes())
    return h.hexdigest()


def test_index_killed_at_random_moments_is_old_or_new_with_milvus_lite(tmp_path):
    db, docs_a, docs_b = tmp_path / "vectors.db", tmp_path / "a", tmp_path / "b"
    docs_a.mkdir(), docs_b.mkdir()
    for i in range(30):
        (docs_a / f"a{i}.txt").write_text(f"Zebra report {i}.\n\nThe herd of {i} zebras grazes.\n", encoding="utf-8")
        (docs_b / f"b{i}.txt").write_text(f"Penguin log {i}.\n\nThe colony of {i} penguins dives.\n", encoding="utf-8")
    index_dir = tmp_path / "killed"
    cmd = {n: qa_cmd("index", "--replace", str(d), "--index-dir", str(index_dir), "--model", FAKE_MODEL,
                     "--store", f"milvus:{db}") for n, d in (("a", docs_a), ("b", docs_b))}
    references = {}
    for name in ("b", "a"):
        started = time.perf_counter()
        done = subprocess.run(cmd[name], capture_output=True, text=True, env=qa_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        full = time.perf_counter() - started
        references[name] = digest(index_dir)
    rng, current = random.Random(1234), "a"
    for _ in range(4):
        other = "b" if current == "a" else "a"
        proc = subprocess.Popen(cmd[other], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=qa_env(),
                                start_new_session=True)
        time.sleep(rng.uniform(0.3, 1.1) * full)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        d = digest(index_dir)
        assert d in (references[current], references[other])
        current = "a" if d == references["a"] else "b"
    done = subprocess.run(cmd["a"], capture_output=True, text=True, env=qa_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert digest(index_dir) == references["a"]
    assert_clean(index_dir)
    assert len(collections(db)) <= 2
