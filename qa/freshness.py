"""Whether an index is current, and why not.

Before answering, ``qa ask`` and ``qa chat`` ask :func:`stale_reasons`: documents
changed or vanished on disk, new files in the indexed folders and globs, BM25 counted
with other rules, other chunking settings, or a model that now embeds differently.
This module only reads (the manifest and the files it names); bringing the index up to
date is :mod:`qa.indexer`'s job.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qa.discover import find_documents
from qa.documents import ChunkSettings
from qa.embedder import Embedder, model_probe, same_model
from qa.lexical import TERMS_VERSION
from qa.manifest import Manifest
from qa.roots import BUNDLED_ROOT, GLOB, document_key, document_path, file_digest, is_under, record_key, vanished


def chunk_settings_for(embedder: Embedder) -> ChunkSettings:
    """Return the chunk settings used with ``embedder``: defaults, capped by its window."""
    defaults = ChunkSettings()
    return ChunkSettings(max_tokens=min(defaults.max_tokens, embedder.max_tokens))


def recorded_probe(manifest: Manifest) -> np.ndarray:
    """Return the probe vector an index's manifest records for its model (empty if none):
    what the model's vectors are checked against, and what its journal is named after."""
    return np.asarray(manifest.model.probe if manifest.model else [], dtype=np.float32)


def as_recorded(probe: np.ndarray) -> np.ndarray:
    """The probe as the manifest records it (6 decimals): the same key whether it was
    just computed or read back from an index."""
    return np.asarray([round(float(x), 6) for x in probe], dtype=np.float32)


def changed_documents(manifest: Manifest) -> list[str]:
    """Return one reason per document of ``manifest`` that changed or vanished on disk.

    A document whose size and modification time are unchanged is trusted without
    reading it; otherwise its content hash decides, so touching a file is not a change.
    A document that can't be read now (permissions, I/O) is not a change: an update
    would keep its indexed version anyway.
    """
    reasons = []
    for record in manifest.documents:
        path = document_path(record)
        if vanished(path):
            reasons.append(f"{path} is missing")
            continue
        try:
            stat = path.stat()
            if stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns:
                continue
            digest = file_digest(path)
        except OSError:
            continue
        if digest != record.sha256:
            reasons.append(f"{path} changed")
    return reasons


def new_documents(manifest: Manifest) -> list[str]:
    """Return one reason per document file that appeared in the index's folders or globs
    since it was written.

    Files that gave nothing to index then (binary, empty...) are new again only once
    they change. Walking the folders is cheap next to answering from a stale index.
    """
    # Sources are stored resolved, so a found path equal to one is known without
    # resolving it again (resolving thousands of paths costs more than the walk).
    known = {record_key(record) for record in manifest.documents}
    passed_over = {item.key: (item.size, item.mtime_ns) for item in manifest.passed_over}
    excluded = manifest.excluded
    reasons = []
    for root in manifest.roots:
        if root == BUNDLED_ROOT or not (GLOB.search(root) or Path(root).is_dir()):
            continue  # a file named as a root is a document of the manifest, or vanished
        for path in find_documents([root]).files:
            if str(path) in known:
                continue
            resolved = Path(os.path.realpath(path))  # never raises: a link loop stays as named
            key = document_key(resolved)
            if key in known or any(is_under(str(resolved), e) for e in excluded):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if passed_over.get(key) != (stat.st_size, stat.st_mtime_ns):
                reasons.append(f"{path} is new")
                known.add(key)
    return reasons


def stale_reasons(manifest: Manifest, embedder: Embedder | None = None, probe: np.ndarray | None = None) -> list[str]:
    """Return why the index described by ``manifest`` is out of date; empty when it is fresh.

    Checks the documents on disk (:func:`changed_documents`), new files in its folders
    (:func:`new_documents`) and the rules its BM25 statistics were counted with
    (:func:`lexicon_reasons`): none of these needs the model. With an ``embedder`` (and
    its ``probe``, if already computed), the chunking settings and the model are checked
    too (:func:`model_reasons`).
    """
    reasons = changed_documents(manifest) + new_documents(manifest) + lexicon_reasons(manifest)
    return reasons + (model_reasons(manifest, embedder, probe) if embedder is not None else [])


def lexicon_reasons(manifest: Manifest) -> list[str]:
    """Return why the index's BM25 statistics are out of date: counted with other rules
    for words (:data:`qa.lexical.TERMS_VERSION`). Counting them again needs no model."""
    if manifest.terms != TERMS_VERSION:
        return ["the rules for BM25 terms changed"]
    return []


def model_reasons(manifest: Manifest, embedder: Embedder, probe: np.ndarray | None = None) -> list[str]:
    """Return why the index's vectors no longer fit ``embedder``: other chunking settings,
    or the model embedding the probe text differently than at build time."""
    reasons = []
    if manifest.chunking != chunk_settings_for(embedder).to_dict():
        reasons.append("the chunking settings changed")
    probe = model_probe(embedder) if probe is None else probe
    if not same_model(recorded_probe(manifest), probe):
        reasons.append(f"the model '{embedder.name}' now gives different vectors")
    return reasons
