"""Keep third-party libraries quiet while a model loads.

transformers and huggingface_hub print warnings and progress bars that mean nothing
to a qa user; the messages qa shows are its own.
"""

from __future__ import annotations

import logging
import os
import warnings


def silence_model_loading() -> None:
    """Turn off the chatter of transformers, tokenizers and huggingface_hub."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    for name in ("transformers", "sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
