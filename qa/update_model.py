"""The embedding model of an index update, loaded only when something must be embedded.

An update that only drops documents, or finds nothing changed, never loads a model.
"""

from __future__ import annotations

import numpy as np

from qa.embedder import Embedder, load_embedder, model_probe, same_model
from qa.freshness import as_recorded, recorded_probe
from qa.index_report import Notify
from qa.manifest import Manifest


class UpdateModel:
    """The embedding model of an update, loaded only when something must be embedded."""

    def __init__(self, name: str, embedder: Embedder | None, notify: Notify):
        self.name = name
        self._embedder = embedder
        self.notify = notify
        self._probe: np.ndarray | None = None

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded (something was embedded, or its probe was needed)."""
        return self._embedder is not None

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            self._embedder = load_embedder(self.name, progress=self.notify)
            # The model that loaded may be another one (EmbeddingGemma falls back to
            # e5-small): the index records the model whose vectors it holds.
            self.name = self._embedder.name
        return self._embedder

    @property
    def probe(self) -> np.ndarray:
        """The model's probe vector (see :func:`qa.embedder.model_probe`), computed once."""
        if self._probe is None:
            self._probe = model_probe(self.embedder)
        return self._probe

    def fingerprint(self, manifest: Manifest) -> np.ndarray:
        """The probe the index records for this model (and names its journal after).

        The one already recorded when this model embeds the probe alike (another
        engine of the same model, such as the torch-free one of small updates, must
        not rewrite it), else this model's own, rounded as the manifest keeps it.
        """
        probe = as_recorded(self.probe)
        stored = recorded_probe(manifest)
        if manifest.model_name == self.name and same_model(stored, probe):
            return stored
        return probe


def check_model(model: UpdateModel, manifest: Manifest, reusable: bool, notify: Notify) -> bool:
    """Load the model and return whether the previous index's vectors are still its vectors."""
    if not reusable:
        return False
    if same_model(recorded_probe(manifest), model.probe):
        return True
    notify(f"the model '{model.name}' now gives different vectors: embedding every document again")
    return False
