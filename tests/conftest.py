"""Shared fixtures: a tiny fake embedding model, and isolated index and cache dirs.

Most tests run with the fake model ("fake-hash"): words hashed into a small vector,
so retrieval follows word overlap and a whole CLI run takes milliseconds. Tests
marked ``model`` use the real default model, built once into ``.cache/``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from qa.embedder import register_embedder, unregister_embedder

REPO = Path(__file__).resolve().parents[1]
FAKE_MODEL = "fake-hash"


class FakeEmbedder:
    """Bag-of-words hashed into ``dim`` buckets: deterministic, fast, lexical."""

    def __init__(self, name: str = FAKE_MODEL, dim: int = 64, max_tokens: int = 64, salt: str = ""):
        self.name = name
        self.dim = dim
        self.max_tokens = max_tokens
        self.salt = salt
        self.calls = 0
        self.embedded: list[str] = []  # every passage text embedded, in order

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def _embed(self, texts) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in self.words(text) or ["<empty>"]:
                digest = hashlib.blake2b((self.salt + word).encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
            out[row] /= np.linalg.norm(out[row])
        return out

    def embed_queries(self, texts):
        return self._embed(list(texts))

    def embed_passages(self, texts, progress=None):
        self.embedded.extend(texts)
        vectors = self._embed(list(texts))
        if progress:
            progress(len(texts), len(texts))
        return vectors


class FileProxy:
    """An open file that passes everything to ``handle``: tests subclass it to watch or
    disturb one method (``write``, ``read``) of the files qa opens."""

    def __init__(self, handle):
        self.handle = handle

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Give every test its own index dir; share one model cache across the run."""
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("QA_CACHE_DIR", str(REPO / ".cache"))
    monkeypatch.delenv("QA_MODEL", raising=False)
    monkeypatch.delenv("QA_STORE", raising=False)
    monkeypatch.delenv("QA_TOP_K", raising=False)
    monkeypatch.setenv("QA_CONFIG", str(tmp_path / "no-qa.toml"))  # the developer's own qa.toml stays out
    monkeypatch.setenv("QA_SERVICE", "0")  # no warm model service outlives a test (test_embed_service starts its own)
    # The index signing key (qa/signing.py), set apart from ``monkeypatch`` so that a
    # test's monkeypatch.undo() keeps the key its indexes were signed with.
    state = pytest.MonkeyPatch()
    state.setenv("QA_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path
    state.undo()


@pytest.fixture
def fake_model():
    """Register the fake embedding model under the name ``fake-hash``."""
    embedder = FakeEmbedder()
    register_embedder(FAKE_MODEL, lambda: embedder)
    yield embedder
    unregister_embedder(FAKE_MODEL)
