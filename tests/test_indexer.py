import numpy as np

from qa.freshness import stale_reasons
from qa.background import background_sets, background_vectors, closest_background
from qa.manifest import Manifest
from qa.indexer import build_index
from qa.store import FORMAT_VERSION, read_index

from conftest import FakeEmbedder


def build(tmp_path, text="The zebra lives in Africa.\n\nPenguins live in Antarctica.\n"):
    doc = tmp_path / "doc.txt"
    doc.write_text(text, encoding="utf-8")
    embedder = FakeEmbedder()
    build_index(tmp_path / "index", [doc], embedder)
    return doc, embedder, read_index(tmp_path / "index").manifest.to_json()  # as written on disk


def test_manifest_records_model_chunking_documents_and_dimension(tmp_path):
    doc, embedder, manifest = build(tmp_path)
    assert manifest["model"]["name"] == embedder.name and len(manifest["model"]["probe"]) == embedder.dim
    assert manifest["dim"] == embedder.dim and manifest["format_version"] == FORMAT_VERSION
    assert manifest["chunking"]["max_tokens"] == embedder.max_tokens
    [record] = manifest["documents"]
    assert record["source"] == str(doc.resolve()) and len(record["sha256"]) == 64 and record["passages"] == 2
    assert stale_reasons(Manifest.from_json(manifest), embedder) == []


def test_changed_chunking_settings_are_stale(tmp_path):
    _, embedder, manifest = build(tmp_path)
    manifest["chunking"]["chunker_version"] = -1
    assert stale_reasons(Manifest.from_json(manifest), embedder) == ["the chunking settings changed"]


def test_changed_model_is_stale(tmp_path):
    _, _, manifest = build(tmp_path)
    assert stale_reasons(Manifest.from_json(manifest), FakeEmbedder(salt="other")) == ["the model 'fake-hash' now gives different vectors"]


def test_changed_and_missing_documents_are_stale(tmp_path):
    doc, embedder, manifest = build(tmp_path)
    doc.write_text("Something else.\n", encoding="utf-8")
    assert stale_reasons(Manifest.from_json(manifest), embedder) == [f"{doc.resolve()} changed"]
    doc.unlink()
    assert stale_reasons(Manifest.from_json(manifest), embedder) == [f"{doc.resolve()} is missing"]


def test_background_vectors_are_cached_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    embedder = FakeEmbedder()
    probe = embedder.embed_passages(["probe"])[0]
    first = background_vectors(embedder, probe)
    assert {name: v.shape for name, v in first.items()} == {
        name: (len(texts), embedder.dim) for name, texts in background_sets().items()}
    calls = embedder.calls
    again = background_vectors(embedder, probe)
    assert all(np.array_equal(again[name], first[name]) for name in first)
    assert embedder.calls == calls
    other = FakeEmbedder(salt="x")
    background_vectors(other, other.embed_passages(["probe"])[0])
    assert other.calls == 2


def test_background_covers_english_and_indonesian():
    sets = background_sets()
    assert set(sets) >= {"en", "id"} and all(len(texts) >= 150 for texts in sets.values())
    assert sum(" the " in t for t in sets["en"]) > 50 and sum(" yang " in t for t in sets["id"]) > 50


def test_closest_background_follows_the_corpus():
    backgrounds = {"a": np.eye(4, dtype=np.float32)[:2], "b": np.eye(4, dtype=np.float32)[2:]}
    corpus = np.array([[0, 0, 1, 0], [0, 0, 0.8, 0.6]], np.float32)
    assert closest_background(corpus, backgrounds) == "b"
    assert closest_background(corpus[:, [2, 3, 0, 1]], backgrounds) == "a"


def test_manifest_names_the_background(tmp_path):
    _, _, manifest = build(tmp_path)
    assert manifest["background"] in background_sets()
