"""The embedding models qa knows by a short name, their licences, and the default.

Imports nothing, so ``qa --version`` and option parsing stay instant. Switching qa's
default model is the one line :data:`DEFAULT_MODEL`.
"""

from __future__ import annotations

E5_MODEL = "intfloat/multilingual-e5-small"
GEMMA_MODEL = "google/embeddinggemma-300m"

DEFAULT_MODEL = GEMMA_MODEL
"""The model of a new index when none is asked for (E5_MODEL or GEMMA_MODEL)."""

SHORT_NAMES = {"e5-small": E5_MODEL, "embeddinggemma": GEMMA_MODEL}

LICENCES = {
    E5_MODEL: "MIT License",
    GEMMA_MODEL: "Gemma Terms of Use (ai.google.dev/gemma/terms)",
}


def canonical_model_name(name: str | None) -> str | None:
    """Return the full name of a model given by its short name (``e5-small``,
    ``embeddinggemma``); any other name or path, and None, unchanged.

    Indexes record full names, so ``--model e5-small`` matches an index built by
    default with multilingual-e5-small.
    """
    if name is None:
        return None
    return SHORT_NAMES.get(name.strip().lower(), name)


def short_name(name: str) -> str:
    """Return the short name of a known model (``e5-small``), else ``name`` itself."""
    return next((short for short, full in SHORT_NAMES.items() if full == name), name)


def is_known_model(name: str | None) -> bool:
    """Return True for a model qa builds itself (e5-small, EmbeddingGemma), by any name.

    An index built with one of them is embedded again when the other is asked for;
    any other model mismatch is an error that says what to run.
    """
    return canonical_model_name(name) in SHORT_NAMES.values()
