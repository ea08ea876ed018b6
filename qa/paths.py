"""Where qa keeps things on disk: the default index, the model cache, chat history.

Every location can be overridden by an environment variable, so tests and users can
point qa anywhere without touching code.
"""

from __future__ import annotations

import os
from pathlib import Path

INDEX_DIR_ENV = "QA_INDEX_DIR"
CACHE_DIR_ENV = "QA_CACHE_DIR"
MODEL_ENV = "QA_MODEL"
STORE_ENV = "QA_STORE"

BUNDLED_ARTICLE = Path(__file__).parent / "data" / "000_007ef922b28a0a10.txt"


def source_checkout_root() -> Path | None:
    """Return the repository root when qa runs from a source checkout, else None.

    A checkout keeps its default index in the top-level ``index/`` folder, as the
    project layout promises; an installed qa uses the user's data directory instead.
    """
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "index").is_dir():
        return root
    return None


def default_index_dir() -> Path:
    """Return the index directory to use when none is given on the command line.

    Order: ``$QA_INDEX_DIR``, then ``index/`` of a source checkout, then the
    platform's user data directory (``~/.local/share/qa/index`` on Linux).
    """
    if os.environ.get(INDEX_DIR_ENV):
        return Path(os.environ[INDEX_DIR_ENV]).expanduser()
    root = source_checkout_root()
    if root is not None:
        return root / "index"
    from platformdirs import user_data_path

    return user_data_path("qa") / "index"


def cache_dir() -> Path:
    """Return the directory for built models and other caches (``$QA_CACHE_DIR`` wins)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("qa")


STATE_DIR_ENV = "QA_STATE_DIR"


def state_dir() -> Path:
    """Return the directory of the user's private state: the index signing key, chat
    history (``$QA_STATE_DIR`` wins; else ``~/.local/state/qa`` on Linux)."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV]).expanduser()
    from platformdirs import user_state_path

    return user_state_path("qa")
