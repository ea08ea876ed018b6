"""The options several ``qa`` commands share, defined once.

Typer reads a command's options from its parameters' defaults; a command that takes
one of these writes ``index_dir: Optional[Path] = IndexDirOption``. Nothing heavy
is imported here: ``qa --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import typer

from qa.models.names import DEFAULT_MODEL, canonical_model_name, short_name
from qa.paths import INDEX_DIR_ENV, MODEL_ENV, STORE_ENV


def _index_dir_path(value: str) -> Path:
    """Parse ``--index-dir``: an empty value is an error, not the current folder.

    ``Path("")`` is ``Path(".")``, so ``--index-dir "$UNSET_VARIABLE"`` wrote an index
    into whatever folder qa was started in.
    """
    if not value.strip():
        raise typer.BadParameter("is empty; give a folder (\".\" for this one)")
    return Path(value)


IndexDirOption = typer.Option(
    None,
    "--index-dir",
    metavar="DIR",
    parser=_index_dir_path,
    envvar=INDEX_DIR_ENV,
    help="Index directory [default: index/ of a source checkout, else the user data dir].",
    show_default=False,
)
StoreOption = typer.Option(
    None,
    "--store",
    metavar="URI",
    envvar=STORE_ENV,
    help="Where the passage vectors are searched: faiss (default), milvus:PATH.db (Milvus Lite) or "
    "milvus://HOST:PORT (a Milvus server; pip install 'qa[milvus]').",
    show_default=False,
)
ModelOption = typer.Option(
    None,
    "--model",
    metavar="NAME",
    envvar=MODEL_ENV,
    callback=lambda value: canonical_model_name(value),
    help="embeddinggemma, e5-small (the fast choice for very large libraries), or a "
    f"sentence-transformers model name or path [default: the index's model, else {short_name(DEFAULT_MODEL)}].",
    show_default=False,
)
TopKOption = typer.Option(1, "--top-k", "-k", min=1, max=100, metavar="N", envvar="QA_TOP_K",
                          help="How many passages to show per answer.")
"""``qa ask``'s and ``qa chat``'s ``--top-k``."""
