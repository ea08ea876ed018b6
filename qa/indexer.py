"""Building an index from documents, and telling when an index is out of date."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.documents import (
    ChunkSettings,
    Document,
    Passage,
    chunk_document,
    normalize_for_model,
    passage_model_text,
    read_document,
    split_sentences,
)
from qa.embedder import Embedder, model_probe, same_model
from qa.paths import BUNDLED_ARTICLE, cache_dir
from qa.lexical import Lexicon
from qa.store import IndexContent, write_index, writer_lock

Notify = Callable[[str], None]
PassageProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class IndexReport:
    """What a build did: where, how many documents and passages, how long it took."""

    directory: Path
    documents: int
    passages: int
    seconds: float


def chunk_settings_for(embedder: Embedder) -> ChunkSettings:
    """Return the chunk settings used with ``embedder``: defaults, capped by its window."""
    defaults = ChunkSettings()
    return ChunkSettings(max_tokens=min(defaults.max_tokens, embedder.max_tokens))


def read_documents(paths: Sequence[Path]) -> list[Document]:
    """Read every path as a text document, failing on the first bad one.

    Raises :class:`qa.documents.DocumentError` before anything is embedded or written,
    so a bad file never costs the existing index anything.
    """
    documents = []
    seen = set()
    for path in paths:
        document = read_document(path)
        if document.source not in seen:
            seen.add(document.source)
            documents.append(document)
    return documents


def background_sets() -> dict[str, list[str]]:
    """Return the bundled texts on unrelated topics, by language (the null model for "no answer").

    Each ``qa/data/background_<language>.txt`` holds one text a line.
    """
    sets = {}
    for path in sorted((Path(__file__).parent / "data").glob("background_*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        sets[path.stem.removeprefix("background_")] = [line for line in lines if line]
    return sets


def background_vectors(embedder: Embedder, probe: np.ndarray) -> dict[str, np.ndarray]:
    """Embed every background set with ``embedder``; cached per model on disk.

    The cache key is the model's probe vector and the texts, so another model, or
    other texts, never reuse a stale cache entry. Returns vectors by language.
    """
    sets = background_sets()
    names = sorted(sets)
    texts = [t for name in names for t in sets[name]]
    key = hashlib.sha256(probe.astype(np.float32).tobytes() + "\n".join(texts).encode()).hexdigest()[:24]
    path = cache_dir() / "background" / f"{key}.npy"
    try:
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape != (len(texts), probe.shape[0]):
            raise ValueError("cache entry of the wrong shape")
    except (OSError, ValueError):
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


def _document_record(document: Document, passages: int, now: str) -> dict:
    path = Path(document.source)
    bundled = path == BUNDLED_ARTICLE.resolve()
    stat = path.stat() if path.exists() else None
    return {
        "source": document.source,
        "bundled": bundled,
        "sha256": document.sha256,
        "size": stat.st_size if stat else None,
        "mtime_ns": stat.st_mtime_ns if stat else None,
        "passages": passages,
        "added": now,
    }


def build_index(
    index_dir: Path,
    paths: Sequence[Path],
    embedder: Embedder,
    notify: Notify | None = None,
    progress: PassageProgress | None = None,
) -> IndexReport:
    """Build the index of ``paths`` in ``index_dir`` with ``embedder``, replacing the old one.

    Documents are read and validated first, then chunked and embedded, and only then
    is the writer lock taken and the new generation written atomically. ``notify``
    receives one-line status messages and ``progress(done, total)`` follows the
    passage embedding. Returns an :class:`IndexReport`.
    """
    started = time.perf_counter()
    documents = read_documents(paths)
    settings = chunk_settings_for(embedder)
    passages: list[Passage] = []
    sentence_spans: list[list[tuple[int, int]]] = []
    per_document: list[int] = []
    titles: list[str | None] = []
    sentence_texts: list[str] = []
    for document in documents:
        chunks = chunk_document(document, embedder.count_tokens, settings)
        passages.extend(chunks)
        for passage in chunks:
            spans = split_sentences(document.text, passage.start, passage.end)
            sentence_spans.append(spans)
            sentence_texts.extend(normalize_for_model(document.text[s:e]) for s, e in spans)
        per_document.append(len(chunks))
        titles.append(chunks[0].title if chunks else None)
    if notify:
        notify(f"embedding {len(passages)} passages ({len(sentence_texts)} sentences) from {len(documents)} document(s)")
    texts = [passage_model_text(p, settings) for p in passages]
    total = len(texts) + len(sentence_texts)
    vectors = _embed(embedder, texts, progress, 0, total)
    sentence_vectors = _embed(embedder, sentence_texts, progress, len(texts), total)
    lexicon = Lexicon.build([p.text for p in passages]).to_arrays()
    probe = model_probe(embedder)
    backgrounds = background_vectors(embedder, probe)
    background_name = closest_background(vectors, backgrounds)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = []
    for document, count, title in zip(documents, per_document, titles):
        record = _document_record(document, count, now)
        record["title"] = title
        records.append(record)
    manifest = {
        "created": now,
        "model": {"name": embedder.name, "probe": [round(float(x), 6) for x in probe]},
        "chunking": settings.to_dict(),
        "background": background_name,
        "documents": records,
        "n_passages": len(passages),
    }
    with writer_lock(index_dir):
        content = IndexContent(passages, vectors, sentence_spans, sentence_vectors, lexicon, backgrounds[background_name])
        write_index(index_dir, manifest, content)
    return IndexReport(index_dir, len(documents), len(passages), time.perf_counter() - started)


def _embed(embedder: Embedder, texts: list[str], progress: PassageProgress | None, done: int, total: int) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dim), np.float32)

    def report(count: int, _: int) -> None:
        if progress:
            progress(done + count, total)

    return embedder.embed_passages(texts, progress=report)


def document_path(record: dict) -> Path:
    """Return where to read a manifest's document now (the bundled article moves with qa)."""
    return BUNDLED_ARTICLE.resolve() if record.get("bundled") else Path(record["source"])


def changed_documents(manifest: dict) -> list[str]:
    """Return one reason per document of ``manifest`` that changed or vanished on disk.

    A document whose size and modification time are unchanged is trusted without
    reading it; otherwise its content hash decides, so touching a file is not a change.
    """
    reasons = []
    for record in manifest.get("documents", []):
        path = document_path(record)
        try:
            stat = path.stat()
        except OSError:
            reasons.append(f"{path} is missing")
            continue
        if stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns"):
            continue
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            reasons.append(f"{path} can't be read")
            continue
        if digest != record.get("sha256"):
            reasons.append(f"{path} changed")
    return reasons


def stale_reasons(manifest: dict, embedder: Embedder, probe: np.ndarray | None = None) -> list[str]:
    """Return why the index described by ``manifest`` is out of date for ``embedder``.

    Checks the documents on disk, the chunking settings, and that the model embeds
    the probe text as it did at build time. An empty list means the index is fresh.
    """
    reasons = changed_documents(manifest)
    if manifest.get("chunking") != chunk_settings_for(embedder).to_dict():
        reasons.append("the chunking settings changed")
    stored = np.asarray(manifest.get("model", {}).get("probe", []), dtype=np.float32)
    probe = model_probe(embedder) if probe is None else probe
    if not same_model(stored, probe):
        reasons.append(f"the model '{embedder.name}' now gives different vectors")
    return reasons


def source_paths(manifest: dict) -> list[Path]:
    """Return the paths of the documents an index was built from, to rebuild it."""
    return [document_path(record) for record in manifest.get("documents", [])]
