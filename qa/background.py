"""Texts on unrelated topics, embedded once per model: the null model for "no answer".

A question's best score means little alone; the index keeps the vectors of the
background set in the corpus's language, and the answer's margin over them says
whether anything answers (see :func:`qa.retriever.background_level`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from qa.embedder import Embedder
from qa.freshness import as_recorded
from qa.paths import cache_dir

Notify = Callable[[str], None]


def background_sets() -> dict[str, list[str]]:
    """Return the bundled texts on unrelated topics, by language (the null model for "no answer").

    Each ``qa/data/background_<language>.txt`` holds one text a line.
    """
    sets = {}
    for path in sorted((Path(__file__).parent / "data").glob("background_*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        sets[path.stem.removeprefix("background_")] = [line for line in lines if line]
    return sets


def background_vectors(embedder: Embedder, probe: np.ndarray, embed_missing: bool = True,
                       notify: Notify | None = None) -> dict[str, np.ndarray] | None:
    """Embed every background set with ``embedder``; cached per model on disk.

    The cache key is the model's probe vector and the texts, so another model, or
    other texts, never reuse a stale cache entry. Returns vectors by language; None
    when they are not cached and ``embed_missing`` is off.
    """
    sets = background_sets()
    names = sorted(sets)
    texts = [t for name in names for t in sets[name]]
    key = hashlib.sha256(as_recorded(probe).tobytes() + "\n".join(texts).encode()).hexdigest()[:24]
    path = cache_dir() / "background" / f"{key}.npy"
    try:
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape != (len(texts), probe.shape[0]):
            raise ValueError("cache entry of the wrong shape")
    except (OSError, ValueError):
        if not embed_missing:
            return None
        if notify and texts:
            notify(f"embedding {len(texts)} texts on unrelated topics for this model, once (they tell when nothing answers)")
        vectors = embedder.embed_passages(texts) if texts else np.zeros((0, probe.shape[0]), np.float32)
        _save_cache(path, vectors)
    out, start = {}, 0
    for name in names:
        out[name] = vectors[start : start + len(sets[name])]
        start += len(sets[name])
    return out


def _save_cache(path: Path, vectors: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that can't be written only costs time


def closest_background(passage_vectors: np.ndarray, backgrounds: dict[str, np.ndarray]) -> str:
    """Return the name of the background set that looks most like the corpus.

    A question scores higher against text in its own language, so the null level
    must come from text in the corpus's language; the set whose centroid is closest
    to the corpus centroid is that one.
    """

    def centroid(rows: np.ndarray) -> np.ndarray:
        mean = rows.mean(axis=0)
        return mean / (np.linalg.norm(mean) or 1.0)

    if passage_vectors.shape[0] == 0:
        return sorted(backgrounds)[0]
    corpus = centroid(passage_vectors)
    return max(sorted(backgrounds), key=lambda name: float(centroid(backgrounds[name]) @ corpus))
