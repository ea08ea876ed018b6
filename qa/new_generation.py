"""The new generation of an update: its manifest, lexicon and background, then the write.

:func:`write_generation` puts together what :func:`qa.store.write_index` writes: the
manifest (model, chunking, roots, documents, what was passed over and skipped), the
BM25 lexicon of the passages and the background set closest to them, and removes
the update's journal once the generation is current.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qa.background import background_vectors, closest_background
from qa.freshness import chunk_settings_for, recorded_probe
from qa.index_rows import Chunked, DocumentRows
from qa.journal import journal_dir, remove_journals
from qa.lexical import TERMS_VERSION, Lexicon
from qa.manifest import Manifest, ModelRecord
from qa.store import IndexContent, Snapshot, write_index
from qa.update_model import UpdateModel
from qa.vectorstore import VectorBackend


def write_generation(index_dir: Path, manifest: Manifest, documents: list[DocumentRows | Chunked], vectors: np.ndarray,
                     sentence_vectors: np.ndarray, roots: list[str], excluded: list[str], skip_records: dict,
                     model: UpdateModel, previous: Snapshot | None, now: str,
                     backend: VectorBackend | None = None) -> None:
    """Write the generation an update made and make it current (see :func:`qa.store.write_index`).

    Takes the previous manifest (an empty one for a new index), the documents in index order
    with their vectors, the library's roots and exclusions, the ``passed_over`` and
    ``skipped`` records, the update's model (not loaded when only documents were
    removed: the previous model's entries stand), the previous snapshot, the time of
    the update and the vector store to write with.
    """
    passages = [p for d in documents for p in d.passages]
    if model.loaded:
        probe = model.fingerprint(manifest)
        same = previous is not None and np.array_equal(probe, recorded_probe(manifest))
        # An update by the model that built the index keeps its background when the sets
        # are not cached: embedding them is 400 texts, 15 s on the torch-free engine.
        backgrounds = background_vectors(model.embedder, probe, embed_missing=not same, notify=model.notify)
        if backgrounds is None:
            background_name, background = manifest.background, previous.background
        else:
            background_name = closest_background(vectors, backgrounds)
            background = backgrounds[background_name]
        model_entry = ModelRecord(model.name, tuple(round(float(x), 6) for x in probe),
                                  int(model.embedder.max_tokens))
        chunking = chunk_settings_for(model.embedder).to_dict()
    else:  # only removals: the previous model's entries stand
        background_name, background = manifest.background, previous.background
        model_entry, chunking = manifest.model, manifest.chunking
    new_manifest = Manifest(
        created=manifest.created or now,
        updated=now,
        model=model_entry,
        chunking=chunking,
        background=background_name,
        roots=tuple(roots),
        excluded=tuple(excluded),
        documents=tuple(d.record for d in documents),
        n_passages=len(passages),
        terms=TERMS_VERSION,
        passed_over=skip_records["passed_over"],
        skipped=skip_records["skipped"],
    )
    lexicon = Lexicon.build([p.text for p in passages]).to_arrays()
    content = IndexContent(passages, vectors, [spans for d in documents for spans in d.sentence_spans],
                           sentence_vectors, lexicon, background)
    write_index(index_dir, new_manifest, content, backend)
    remove_journals(index_dir, journal_dir(index_dir, model_entry.name, list(model_entry.probe)))
