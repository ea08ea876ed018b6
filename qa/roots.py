"""Which files make up an index's library: document keys, roots and paths.

The manifest names each document by its resolved path (the bundled article by
:data:`BUNDLED_ROOT`, wherever qa is installed) and keeps the folders, files and globs
it was asked to index (its roots). These functions turn one into the other; both the
indexer and the freshness checks use them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from qa.files import open_regular
from qa.paths import BUNDLED_ARTICLE

if TYPE_CHECKING:  # qa.manifest imports this module
    from qa.manifest import DocumentRecord

BUNDLED_ROOT = "<bundled article>"
GLOB = re.compile(r"[*?\[]")
"""A root holding one of these characters is a glob pattern."""


def document_path(record: DocumentRecord) -> Path:
    """Return where to read a manifest's document now (the bundled article moves with qa)."""
    return BUNDLED_ARTICLE.resolve() if record.bundled else Path(record.source)


def document_key(path: Path | str) -> str:
    """Return how a document is matched between index runs: its resolved path.

    The bundled article is matched as itself wherever qa is installed.
    """
    path = Path(path)
    if path == BUNDLED_ARTICLE.resolve() or path == BUNDLED_ARTICLE:
        return BUNDLED_ROOT
    return str(path)


def record_key(record: DocumentRecord) -> str:
    """Return a manifest document's key (see :func:`document_key`)."""
    return BUNDLED_ROOT if record.bundled else record.source


def root_path(root: str) -> str:
    """Return the path a root names (the bundled article's, for :data:`BUNDLED_ROOT`)."""
    return str(BUNDLED_ARTICLE.resolve()) if root == BUNDLED_ROOT else root


def normalize_input(value: str | Path) -> str:
    """Return an input path or glob as an absolute string, as stored among the roots.

    A path that exists is resolved (symlinks followed), as document keys are, so that
    removing or excluding it matches the documents found through it.
    """
    path = Path(os.fspath(value)).expanduser()
    resolved = Path(os.path.realpath(path))  # Path.resolve raises RuntimeError on a link loop
    if resolved == BUNDLED_ARTICLE.resolve():
        return BUNDLED_ROOT
    if not (resolved.is_file() or resolved.is_dir()):
        # /dev/stdin resolves to /dev/null or "pipe:[1234]": errors name what the user typed
        return os.path.abspath(path)
    return str(resolved)


def is_under(path: str, parent: str) -> bool:
    """Return True when ``path`` is ``parent`` or inside it (both absolute strings)."""
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def file_digest(path: Path) -> str:
    """Return the SHA-256 of a file's bytes: the content hash a manifest records."""
    return observed_digest(path)[0]


def observed_digest(path: Path) -> tuple[str, tuple[int, int]]:
    """Return a file's SHA-256 and its ``(size, mtime_ns)`` as seen just before hashing.

    The stat is taken on the opened descriptor before the bytes are read, so that an
    index recording the pair next to the hash never pairs an old hash with the time
    of an edit made while hashing: the next check then sees the file as changed.
    """
    with open_regular(path) as handle:  # a document replaced by a FIFO must not hang ask
        info = os.fstat(handle.fileno())
        return hashlib.file_digest(handle, "sha256").hexdigest(), (info.st_size, info.st_mtime_ns)


def vanished(path: Path) -> bool:
    """True when ``path`` is gone; False when it exists or can't be checked (kept, then)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False
