"""Building an index from documents, and telling when an index is out of date."""

from __future__ import annotations

import os
import re
import time
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from qa.background import background_vectors, closest_background
from qa.documents import (
    ChunkSettings,
    Document,
    DocumentError,
    Passage,
    chunk_document,
    normalize_for_model,
    passage_model_text,
    read_document,
    split_sentences,
)
from qa.embedder import DEFAULT_MODEL, Embedder, load_embedder, model_probe, same_model
from qa.journal import EmbeddingJournal, journal_dir, remove_journals, text_key
from qa.discover import Skipped, find_documents
from qa.freshness import as_recorded, chunk_settings_for, lexicon_reasons, recorded_probe
from qa.roots import (
    BUNDLED_ROOT,
    GLOB,
    document_key,
    document_path,
    is_under,
    normalize_input,
    observed_digest,
    record_key,
    root_path,
    vanished,
)
from qa.lexical import TERMS_VERSION, Lexicon
from qa.paths import cache_dir
from qa.vectorstore import VectorBackend, backend_for_record, store_uri, vector_backend
from qa.store import (
    IndexContent,
    IndexCorrupt,
    IndexMissing,
    IndexOldFormat,
    Snapshot,
    is_current,
    make_current,
    generation_signed,
    newest_intact_generation,
    read_index,
    read_manifest,
    remove_leftovers,
    write_index,
    writer_lock,
)

Notify = Callable[[str], None]
PassageProgress = Callable[..., None]
"""``progress(done, total, step="embedding")``: ``done`` of ``total`` texts embedded, or of
files read when ``step`` is "reading files"; shown as a bar per step."""


EMBED_BATCH = 256
CHUNK_PROGRESS_CHARS = 1 << 20
"""Documents this long get a bar while they are cut into passages."""


class IndexingError(Exception):
    """An index update can't be done as asked; the message is one line for the user."""


@dataclass(frozen=True)
class RayOptions:
    """Where ``qa index --ray`` embeds: the address ``ray.init`` takes (None: a local runtime), and how many actors."""

    address: str | None = None
    workers: int = 1


@dataclass
class IndexReport:
    """What an index update did.

    ``added``, ``updated`` and ``removed`` list documents by source; ``unchanged``
    counts documents whose vectors were reused; ``embedded`` counts texts embedded
    now and ``resumed`` those taken from an interrupted run's journal; ``failed_inputs``
    are inputs named by the user that gave nothing to index; ``notes`` say how a
    document was read when that involved a guess (its encoding). ``written`` is False
    when the index was already up to date.
    """

    directory: Path
    documents: int = 0
    passages: int = 0
    seconds: float = 0.0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    skipped_before: set[tuple[str, str]] = field(default_factory=set)
    failed_inputs: list[Skipped] = field(default_factory=list)
    notes: list[Skipped] = field(default_factory=list)
    embedded: int = 0
    resumed: int = 0
    written: bool = False

    def listed_skips(self) -> list[Skipped]:
        """The skipped files ``qa index`` lists: all but the named inputs that failed,
        which are the run's error instead."""
        failed = {item.path for item in self.failed_inputs}
        return [item for item in self.skipped if item.path not in failed]


def passage_positions(document: Document, passages: list[Passage]) -> list[Passage]:
    """Return ``passages`` with where a person finds them: line for text, page for PDF.

    Lines are 1-based lines of the file itself (a text document's text is the file's
    content), pages 1-based PDF pages; other formats get neither.
    """
    if document.kind == "pdf" and document.pages:
        return [replace(p, page=bisect_right(document.pages, p.start)) for p in passages]
    if document.kind != "text":
        return passages
    newlines = [m.start() for m in re.finditer("\n", document.text)]
    return [replace(p, line=bisect_right(newlines, p.start - 1) + 1) for p in passages]


@dataclass
class DocumentRows:
    """One document's share of an index: its manifest record, passages and vectors."""

    record: dict
    passages: list[Passage]
    sentence_spans: list[list[tuple[int, int]]]
    vectors: np.ndarray
    sentence_vectors: np.ndarray


def rows_by_document(snapshot: Snapshot) -> dict[str, DocumentRows]:
    """Split a loaded index into its documents' rows, by :func:`document_key` (views, not copies)."""
    content = snapshot.content
    out: dict[str, DocumentRows] = {}
    first = first_sentence = 0
    for record in snapshot.manifest.get("documents", []):
        count = int(record.get("passages", 0))
        spans = content.sentence_spans[first : first + count]
        n_sentences = sum(map(len, spans))
        out[record_key(record)] = DocumentRows(
            record,
            content.passages[first : first + count],
            spans,
            content.vectors[first : first + count],
            content.sentence_vectors[first_sentence : first_sentence + n_sentences],
        )
        first += count
        first_sentence += n_sentences
    return out


def _expected_chunking(manifest: dict) -> dict | None:
    max_tokens = manifest.get("model", {}).get("max_tokens")
    if not isinstance(max_tokens, int):
        return None
    return ChunkSettings(max_tokens=min(ChunkSettings().max_tokens, max_tokens)).to_dict()


class _Model:
    """The embedding model of an update, loaded only when something must be embedded."""

    def __init__(self, name: str, embedder: Embedder | None, notify: Notify):
        self.name = name
        self._embedder = embedder
        self.notify = notify
        self._probe: np.ndarray | None = None

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.name, progress=self.notify)
            # The model that loaded may be another one (EmbeddingGemma falls back to
            # e5-small): the index records the model whose vectors it holds.
            self.name = self._embedder.name
        return self._embedder

    @property
    def probe(self) -> np.ndarray:
        if self._probe is None:
            self._probe = model_probe(self.embedder)
        return self._probe

    def fingerprint(self, manifest: dict) -> np.ndarray:
        """The probe the index records for this model (and names its journal after).

        The one already recorded when this model embeds the probe alike (another
        engine of the same model, such as the torch-free one of small updates, must
        not rewrite it), else this model's own, rounded as the manifest keeps it.
        """
        probe = as_recorded(self.probe)
        stored = recorded_probe(manifest)
        if manifest.get("model", {}).get("name") == self.name and same_model(stored, probe):
            return stored
        return probe


def _previous_snapshot(index_dir: Path, notify: Notify, has_inputs: bool = False) -> tuple[Snapshot | None, dict, bool]:
    """Return the index to update (None if there is none or it can't be loaded), and the
    manifest of an index that can't be loaded but whose documents can be indexed again
    (older format, or damaged with a trustworthy manifest; else empty).

    When ``CURRENT`` or the current manifest is damaged, the newest generation whose
    manifest is intact supplies the document list: loaded whole (and made current)
    when its files are intact too, so that only changed documents are embedded again.
    With no intact manifest anywhere, the index is rebuilt only from paths the user
    gave (``has_inputs``), never from the bundled article; without them this raises
    :class:`IndexingError` saying how to rebuild it. The caller holds the writer lock.
    The third value says whether what is returned was written by this user's qa
    (:mod:`qa.signing`); True when nothing is returned.
    """
    try:
        snapshot = read_index(index_dir)
        return snapshot, {}, snapshot.signed
    except IndexMissing:
        return None, {}, True
    except IndexOldFormat as exc:
        signed = generation_signed(index_dir)
        if signed:
            notify("the index was written by an older qa: indexing its documents again")
        return None, exc.manifest, signed
    except IndexCorrupt as exc:
        manifest = read_manifest(index_dir)
        if manifest is not None:  # a damaged data file; the document list is intact
            signed = generation_signed(index_dir)
            if signed:
                notify(f"{exc}; building a new index from its documents")
            return None, manifest, signed
        return _recovered(index_dir, exc, notify, has_inputs)


def _recovered(index_dir: Path, exc: IndexCorrupt, notify: Notify, has_inputs: bool) -> tuple[Snapshot | None, dict, bool]:
    """What to rebuild from when ``CURRENT`` or the current manifest can't be trusted:
    see :func:`_previous_snapshot`."""
    intact = newest_intact_generation(index_dir)
    if intact is None:
        if not has_inputs:
            raise IndexingError(rebuild_message(exc, f" --index-dir {index_dir}"))
        notify(f"{damaged_index_message(exc)}: building a new index from the paths given")
        return None, {}, True
    if not intact.signed:
        return None, intact.manifest, False
    documents = intact.manifest.get("documents")
    count = len(documents) if isinstance(documents, list) else 0
    written = intact.manifest.get("updated") or intact.manifest.get("created")
    when = f", written {written}" if isinstance(written, str) else ""
    notify(f"{exc}; rebuilding it from the document list of {intact.generation} "
           f"({count} document{'s' * (count != 1)}{when}), the newest intact one")
    if intact.snapshot is None:  # its data files are damaged too, or of an older format
        return None, intact.manifest, True
    make_current(index_dir, intact)
    return intact.snapshot, {}, True


def foreign_index_message(index_dir: Path) -> str:
    """The one-line refusal to update an index this user's qa did not write (:mod:`qa.signing`)."""
    return (f"the index in {index_dir} was not written by your qa (its manifest lacks your signature), so qa "
            f"never reads the paths it names: `qa index PATH... --replace --index-dir {index_dir}` "
            "makes it yours from paths you give")


def damaged_index_message(exc: IndexCorrupt) -> str:
    """Return the one-line description of an index that can't be recovered: its damage
    (``exc``), and that no intact document list is left in it. The caller adds what to run."""
    return f"{exc}, and no intact list of its documents is left"


def rebuild_message(exc: IndexCorrupt, option: str) -> str:
    """Return the one-line error for an index that can't be recovered, with its repair
    hint: the command that rebuilds it from the user's paths (``option`` names its
    ``--index-dir``, or is empty for the default). ``qa index`` and ``qa ask`` both say this."""
    return f"{damaged_index_message(exc)}: `qa index PATH... --replace{option}` rebuilds it from the given paths"


def _carried_roots(manifest: dict) -> list[str]:
    """The roots and documents of an index that can't be loaded (older format, or
    damaged but with an intact manifest), to index them again rather than lose them."""
    roots = [r for r in manifest.get("roots", []) if isinstance(r, str)] if isinstance(manifest.get("roots"), list) else []
    documents = manifest.get("documents")
    for record in documents if isinstance(documents, list) else []:
        if isinstance(record, dict) and isinstance(record.get("source"), str):
            roots.append(BUNDLED_ROOT if record.get("bundled") else record["source"])
    return roots


def update_index(
    index_dir: Path,
    inputs: Sequence[str | Path] = (),
    *,
    model: str | None = None,
    embedder: Embedder | None = None,
    remove: Sequence[str | Path] = (),
    replace_all: bool = False,
    notify: Notify | None = None,
    progress: PassageProgress | None = None,
    lock_timeout: float = 600.0,
    skips_shown: bool = True,
    current: Snapshot | None = None,
    ray: RayOptions | None = None,
    store: str | None = None,
) -> IndexReport:
    """Bring the index in ``index_dir`` up to date with its documents, embedding only what changed.

    Takes the index directory; ``inputs``, files, directories and globs to add (they
    join the roots remembered from earlier runs, which are scanned again); the model
    name (None: the index's own, else the default) or an already loaded
    ``embedder``; paths to ``remove`` from the index; ``replace_all`` to index
    exactly ``inputs`` and drop the rest; callbacks for status lines and
    embedding progress; and whether the caller shows the user the files skipped
    (``skips_shown``: ``qa index`` does, ``ask`` and ``chat`` don't). The manifest
    records the skipped files shown, so that the next run can tell which are new
    (``report.skipped_before``). ``current`` is the snapshot the caller already read
    and verified (``qa ask`` on a stale index): while ``CURRENT`` still names its
    generation it is updated without reading and checksumming the index again. With
    ``ray``, the texts to embed are embedded by Ray actors (see :mod:`qa.ray_embed`)
    instead of in this process. ``store`` is the URI of the vector store to write (see
    :mod:`qa.vectorstore`; None: the one the index uses, FAISS files for a new index);
    naming another one moves the vectors.

    A document is re-embedded only when its content hash changed; deleted documents
    are dropped; unreadable or unsupported files are skipped with a reason, and a
    document indexed before keeps its indexed version when it can't be read now.
    Vectors are journalled as they are embedded, so a rerun after an interruption
    resumes. The whole update holds the writer lock; the new generation replaces
    the old atomically. An index that can't be read is rebuilt from its documents
    as far as they are known (see :func:`_previous_snapshot`), never replaced by
    the bundled article. Returns an :class:`IndexReport`.
    """
    started = time.perf_counter()
    notify = notify or (lambda _message: None)
    with writer_lock(index_dir, timeout=lock_timeout):
        remove_leftovers(index_dir)  # of a run killed while writing
        if current is not None and is_current(index_dir, current):
            previous, old_format, signed = current, {}, current.signed
        else:
            previous, old_format, signed = _previous_snapshot(index_dir, notify, has_inputs=bool(inputs))
        if not signed:
            if not replace_all:
                raise IndexingError(foreign_index_message(index_dir))
            notify(f"the index in {index_dir} was not written by your qa: building a new one from the paths given")
            previous, old_format = None, {}
        carried = [] if replace_all else _carried_roots(old_format)
        old_model = old_format.get("model")
        if not model and isinstance(old_model, dict) and isinstance(old_model.get("name"), str):
            model = old_model["name"]
        report = _update(index_dir, previous, list(inputs), model, embedder, list(remove), replace_all, notify,
                         progress, carried, skips_shown, ray, store)
    report.seconds = time.perf_counter() - started
    return report


def build_index(
    index_dir: Path,
    paths: Sequence[Path],
    embedder: Embedder,
    notify: Notify | None = None,
    progress: PassageProgress | None = None,
) -> IndexReport:
    """Make the index in ``index_dir`` hold exactly ``paths``, embedded with ``embedder``.

    See :func:`update_index` (with ``replace_all``): unchanged documents keep their vectors.
    """
    return update_index(index_dir, paths, embedder=embedder, replace_all=True, notify=notify, progress=progress)


def _update(index_dir, previous, inputs, model_name, embedder, remove, replace_all, notify, progress,
            carried: Sequence[str] = (), skips_shown: bool = True, ray: RayOptions | None = None,
            store: str | None = None) -> IndexReport:
    manifest = previous.manifest if previous else {}
    backend, moved = _store_backend(store, manifest if previous else None)
    built_with = manifest.get("model", {}).get("name")
    name = embedder.name if embedder is not None else (model_name or built_with or DEFAULT_MODEL)
    model = _Model(name, embedder, notify)
    report = IndexReport(index_dir)
    old_rows = rows_by_document(previous) if previous else {}
    reusable = bool(previous) and built_with == name and manifest.get("chunking") == _expected_chunking(manifest)

    new_roots = [normalize_input(i) for i in inputs]
    roots, excluded = _roots_and_exclusions(manifest, new_roots, [normalize_input(r) for r in remove],
                                            carried, replace_all, old_rows)
    # A folder or file indexed before and deleted since is forgotten (its documents dropped).
    roots = [r for r in roots if r in new_roots or r == BUNDLED_ROOT or GLOB.search(r) or not vanished(Path(r))]
    files, root_files = _find_files(roots, excluded, old_rows, replace_all, report)
    kept, pending = _split_unchanged(files, old_rows, reusable, report)
    if embedder is not None and reusable:
        reusable = _check_model(model, manifest, reusable, notify)
    chunked, reusable = _read_and_chunk(files, kept, pending, old_rows, model, manifest, reusable, notify, report,
                                        progress)
    if not reusable:
        kept = {}
    roots = _drop_failed_inputs(roots, new_roots, root_files, kept, chunked, report)
    if replace_all and report.failed_inputs:  # replacing the library by less than was named: refuse
        raise IndexingError("; ".join(f"{item.path}: {item.reason}" for item in report.failed_inputs)
                            + "; nothing was replaced")
    if previous is None and not chunked and not kept:  # a first index with nothing in it
        reasons = "; ".join(f"{item.path}: {item.reason}" for item in report.failed_inputs)
        raise IndexingError(f"{reasons or 'nothing to index'}; no index was written")

    roots_changed = roots != manifest.get("roots") or excluded != manifest.get("excluded", [])
    restated = any(rows.record is not old_rows[key].record for key, rows in kept.items() if key in old_rows)
    passed_over = _passed_over(files, kept, chunked)
    skipped = skipped_record(report.listed_skips()) if skips_shown else manifest.get("skipped", [])
    report.skipped_before = {
        (item[0], item[1]) for item in manifest.get("skipped", [])
        if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
    }
    if previous and reusable and not moved and not chunked and not report.removed and not roots_changed and not restated \
            and not lexicon_reasons(manifest) and passed_over == manifest.get("passed_over", []) \
            and skipped == manifest.get("skipped", []):
        # A run killed after its generation became current left its journal.
        remove_journals(index_dir, journal_dir(index_dir, name, recorded_probe(manifest)))
        report.unchanged = len(kept)
        report.documents = len(previous.manifest.get("documents", []))
        report.passages = len(previous.passages)
        return report

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    order = [k for k in files if k in kept or k in chunked] + [k for k in kept if k not in files]
    documents: list[DocumentRows | Chunked] = []
    for key in order:
        if key in chunked:
            item = chunked[key]
            (report.updated if key in old_rows else report.added).append(item.record["source"])
            item.record["added"] = old_rows[key].record.get("added", now) if key in old_rows else now
            item.record["updated"] = now
            documents.append(item)
        else:
            report.unchanged += 1
            documents.append(kept[key])
    dim = model.embedder.dim if chunked or model.loaded else previous.content.vectors.shape[1]
    vectors, sentence_vectors = _vectors_of(index_dir, documents, old_rows if reusable else {}, model, manifest,
                                            dim, notify, progress, report, ray)
    _write(index_dir, manifest, documents, vectors, sentence_vectors, roots, excluded,
           {"passed_over": passed_over, "skipped": skipped}, model, previous, now, backend)
    report.documents = len(documents)
    report.passages = len(vectors)
    report.written = True
    return report


def _store_backend(store: str | None, manifest: dict | None) -> tuple[VectorBackend, bool]:
    """Return the vector backend an update writes with, and whether it differs from the index's own.

    No ``store`` keeps the store the index was written with (FAISS files for a new one).
    """
    recorded = backend_for_record(manifest.get("vectors")) if manifest is not None else None
    if store is None:
        return recorded or vector_backend(), False
    backend = vector_backend(store)
    if hasattr(backend, "check"):  # a server: unreachable is said before any embedding, not after
        backend.check()
    moved = recorded is not None and store_uri(backend) != store_uri(recorded)
    return backend, moved


def _roots_and_exclusions(manifest: dict, new_roots: list[str], removals: list[str], carried: Sequence[str],
                          replace_all: bool, old_rows: dict) -> tuple[list[str], list[str]]:
    """Return the roots to scan (earlier runs' and today's) and the paths excluded from them.

    A removed path leaves the roots and joins the exclusions, so that a scan of the
    folder around it doesn't bring it back; naming a path again lifts its exclusion.
    Raises :class:`IndexingError` for a removal of something not in the index.
    """
    roots = list(dict.fromkeys(new_roots if replace_all else [*manifest.get("roots", []), *carried, *new_roots]))
    # Naming a path again lifts an exclusion of it or of a folder around it, not of what is inside it.
    excluded = [] if replace_all else [e for e in manifest.get("excluded", []) if not any(is_under(r, e) for r in new_roots)]
    for target in removals:
        if not any(is_under(root_path(k), root_path(target)) for k in old_rows) and not any(is_under(r, target) for r in roots):
            raise IndexingError(f"{target} is not in the index")
    if removals:
        roots = [r for r in roots if not any(is_under(root_path(r), root_path(t)) for t in removals)]
        excluded = list(dict.fromkeys([*excluded, *(root_path(t) for t in removals)]))
    if not roots and not manifest and not carried and not replace_all and not removals:
        roots = [BUNDLED_ROOT]
    return roots, excluded


def _find_files(roots: list[str], excluded: list[str], old_rows: dict, replace_all: bool,
                report: IndexReport) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Return the document files that make up the index now, by key, and each root's keys.

    Documents indexed before that are now deleted, excluded or (with ``replace_all``)
    not among the roots are listed in ``report.removed``; the others stay, even
    outside today's roots.
    """

    def is_excluded(path: str) -> bool:
        return any(is_under(path, e) for e in excluded)

    files: dict[str, Path] = {}
    root_files: dict[str, list[str]] = {}
    walk_skips: list[Skipped] = []
    for root in roots:
        found = find_documents([root_path(root)])
        walk_skips.extend(found.skipped)
        root_files[root] = []
        for path in found.files:
            resolved = Path(os.path.realpath(path))  # never raises: a link loop stays as named
            if not is_excluded(str(resolved)):
                files.setdefault(document_key(resolved), path)
                root_files[root].append(document_key(resolved))
    for key, rows in old_rows.items():
        path = document_path(rows.record)
        if key in files:
            continue
        if replace_all or is_excluded(str(path)) or vanished(path):
            report.removed.append(rows.record["source"])
        else:
            files[key] = path
    # A file a folder walk passes over (an unlisted suffix) but that was named and indexed
    # before is a document of the index, not a skipped file.
    report.skipped.extend(item for item in walk_skips if document_key(os.path.realpath(item.path)) not in files)
    return files, root_files


def _passed_over(files: dict[str, Path], kept: dict, chunked: dict) -> list[dict]:
    """Return the files found under the roots that gave nothing to index (binary, empty
    text, a scanned PDF...), with their size and modification time, sorted by key.

    Recorded in the manifest so that :func:`new_documents` doesn't take them for new
    documents before every question; a change to one makes it new again.
    """
    out = []
    for key in sorted(files):
        if key in kept or key in chunked:
            continue
        try:
            stat = files[key].stat()
        except OSError:
            continue
        out.append({"key": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return out


def _split_unchanged(files: dict[str, Path], old_rows: dict, reusable: bool,
                     report: IndexReport) -> tuple[dict[str, DocumentRows], list[str]]:
    """Return the documents whose content hash is unchanged (their rows), and the keys of the rest."""
    kept: dict[str, DocumentRows] = {}
    pending: list[str] = []
    for key, path in files.items():
        old = old_rows.get(key)
        try:
            digest, observed = observed_digest(path)
        except OSError as exc:
            _skip_keeping(report, kept, key, path, old, exc.strerror or type(exc).__name__)
            continue
        if reusable and old and old.record.get("sha256") == digest:
            kept[key] = _restat(old, path, observed)
        else:
            pending.append(key)
    return kept, pending


def _read_and_chunk(files, kept, pending, old_rows, model: _Model, manifest, reusable: bool, notify,
                    report: IndexReport, progress: PassageProgress | None = None) -> tuple[dict[str, Chunked], bool]:
    """Read and chunk the pending documents, one at a time, so that only passages stay in memory.

    The model is loaded with the first readable document; if it no longer gives the
    previous index's vectors, every kept document is chunked again too. Returns the
    chunked documents and whether the previous index's vectors are still usable.
    """
    chunked: dict[str, Chunked] = {}
    queue = list(pending) if reusable else list(dict.fromkeys([*pending, *kept]))
    read = 0
    while queue:
        if progress and len(queue) + read > 1:
            progress(read, len(queue) + read, "reading files")
        key = queue.pop(0)
        read += 1
        path = files[key]
        try:
            document = read_document(path)
        except DocumentError as exc:
            kept.pop(key, None)
            _skip_keeping(report, kept, key, path, old_rows.get(key) if reusable else None,
                          str(exc).removeprefix(f"{path}: "))
            continue
        if not model.loaded and reusable and not _check_model(model, manifest, reusable, notify):
            reusable = False
            queue = list(dict.fromkeys([*queue, *kept]))
        chunked[key] = chunk_for_index(document, model.embedder, progress)
        if document.note:
            report.notes.append(Skipped(str(path), document.note))
        del document
    if progress and read > 1:
        progress(read, read, "reading files")
    return chunked, reusable


def skipped_record(skipped: list[Skipped]) -> list[list[str]]:
    """Return what the manifest keeps of a run's skipped files: sorted ``[path, reason]`` pairs.

    The next run compares its own with it, so that ``qa index`` lists in full only the
    files skipped for a new reason, not the same ones on every run.
    """
    return [list(pair) for pair in sorted({(item.path, item.reason) for item in skipped})]


def _drop_failed_inputs(roots, new_roots, root_files, kept, chunked, report: IndexReport) -> list[str]:
    """Record today's inputs that gave nothing to index (an error), and forget them as roots."""
    for root in new_roots:
        if not any(key in kept or key in chunked for key in root_files.get(root, ())):
            path = root_path(root)
            reasons = sorted({item.reason for item in report.skipped if is_under(item.path, path)})
            report.failed_inputs.append(Skipped(path, reasons[0] if len(reasons) == 1 else "no documents to index"))
    failed = {item.path for item in report.failed_inputs}
    return [r for r in roots if root_path(r) not in failed]


def _skip_keeping(report: IndexReport, kept: dict, key: str, path: Path, old: DocumentRows | None, reason: str) -> None:
    if old is not None:
        kept[key] = _restat(old, path)
        reason += "; keeping the version indexed before"
    report.skipped.append(Skipped(str(path), reason))


def _restat(rows: DocumentRows, path: Path, observed: tuple[int, int] | None = None) -> DocumentRows:
    """Return ``rows`` with the file's size and modification time: ``observed`` (as
    seen before the file was hashed) or else as they are now.

    Recorded for a file touched but unchanged, or changed but unreadable (its indexed
    version kept), so that questions don't find it "changed" and update the index
    every time; ``qa index`` always compares content hashes.
    """
    if observed is None:
        try:
            stat = path.stat()
        except OSError:
            return rows
        observed = (stat.st_size, stat.st_mtime_ns)
    if observed == (rows.record.get("size"), rows.record.get("mtime_ns")):
        return rows
    return replace(rows, record={**rows.record, "size": observed[0], "mtime_ns": observed[1]})


def _document_record(document: Document, passages: int, title: str | None) -> dict:
    """Return a document's manifest record. Its size and modification time are those
    seen before its bytes were read (``document.observed``): a time taken now, after
    chunking, could be an edit's, paired with the hash of the text before it."""
    path = Path(document.source)
    observed = document.observed
    if observed is None:
        try:
            stat = path.stat()
            observed = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            observed = (None, None)
    record = {
        "source": document.source,
        "bundled": document_key(path) == BUNDLED_ROOT,
        "kind": document.kind,
        "sha256": document.sha256,
        "size": observed[0],
        "mtime_ns": observed[1],
        "passages": passages,
        "title": title,
    }
    if document.note:
        record["note"] = document.note
    return record


@dataclass
class Chunked:
    """A document cut into passages, without its full text: what embedding needs."""

    record: dict
    passages: list[Passage]
    sentence_spans: list[list[tuple[int, int]]]


def chunk_for_index(document: Document, embedder: Embedder, progress: PassageProgress | None = None) -> Chunked:
    """Cut ``document`` into passages (with positions) and sentences, for ``embedder``;
    by its tokens' offsets when it gives them (``token_offsets``: see :mod:`qa.token_packing`),
    with a "cutting into passages" bar through ``progress`` for a document of a megabyte or more."""
    settings = chunk_settings_for(embedder)
    shown = progress if progress is not None and len(document.text) >= CHUNK_PROGRESS_CHARS else None
    passages = passage_positions(document, chunk_document(
        document, embedder.count_tokens, settings, token_offsets=getattr(embedder, "token_offsets", None),
        progress=(lambda done, total: shown(done >> 10, total >> 10, "cutting into passages (KB)")) if shown else None))
    spans = [split_sentences(document.text, p.start, p.end) for p in passages]
    return Chunked(_document_record(document, len(passages), passages[0].title if passages else None), passages, spans)


def _sentence_texts(passage: Passage, spans: list[tuple[int, int]]) -> list[str]:
    return [normalize_for_model(passage.text[s - passage.start : e - passage.start]) for s, e in spans]


def _check_model(model: _Model, manifest: dict, reusable: bool, notify: Notify) -> bool:
    """Load the model and return whether the previous index's vectors are still its vectors."""
    if not reusable:
        return False
    if same_model(recorded_probe(manifest), model.probe):
        return True
    notify(f"the model '{model.name}' now gives different vectors: embedding every document again")
    return False


def _vectors_of(index_dir, documents: list[DocumentRows | Chunked], old_rows: dict[str, DocumentRows],
                model: _Model, manifest: dict, dim: int, notify, progress, report,
                ray: RayOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the passage and sentence vectors of ``documents``, in order, embedding only new texts.

    Vectors of kept documents are copied from the previous index; a text seen before
    (in an edited document's old version, or in an interrupted run's journal) is
    reused; the rest is embedded in batches, each journalled before the next (by the
    model here, or by Ray actors when ``ray`` is given). Every vector is written once,
    straight into the arrays the index is made of.
    """
    n_passages = sum(len(d.passages) for d in documents)
    n_sentences = sum(len(spans) for d in documents for spans in d.sentence_spans)
    vectors = np.empty((n_passages, dim), dtype=np.float32)
    sentence_vectors = np.empty((n_sentences, dim), dtype=np.float32)
    targets: dict[bytes, list[tuple[np.ndarray, int]]] = {}
    texts: dict[bytes, str] = {}
    settings = chunk_settings_for(model.embedder) if any(isinstance(d, Chunked) for d in documents) else None
    row = sentence_row = 0
    for document in documents:
        count, sentences = len(document.passages), sum(map(len, document.sentence_spans))
        if isinstance(document, DocumentRows):
            vectors[row : row + count] = document.vectors
            sentence_vectors[sentence_row : sentence_row + sentences] = document.sentence_vectors
        else:
            at = sentence_row
            for i, (passage, spans) in enumerate(zip(document.passages, document.sentence_spans)):
                text = passage_model_text(passage, settings)
                key = text_key(text)
                texts.setdefault(key, text)
                targets.setdefault(key, []).append((vectors, row + i))
                for sentence in _sentence_texts(passage, spans):
                    key = text_key(sentence)
                    texts.setdefault(key, sentence)
                    targets.setdefault(key, []).append((sentence_vectors, at))
                    at += 1
        row += count
        sentence_row += sentences
    if not targets:
        return vectors, sentence_vectors

    def place(key: bytes, vector: np.ndarray) -> bool:
        found = targets.pop(key, None)
        for array, index in found or ():
            array[index] = vector
        return found is not None

    for document in documents:  # an edited document keeps the vectors of its untouched passages
        old = old_rows.get(document_key(document.record["source"])) if isinstance(document, Chunked) else None
        if old is None:
            continue
        old_sentence = 0
        for passage, spans, vector in zip(old.passages, old.sentence_spans, old.vectors):
            place(text_key(passage_model_text(passage, settings)), vector)
            for sentence in _sentence_texts(passage, spans):
                place(text_key(sentence), old.sentence_vectors[old_sentence])
                old_sentence += 1
    journal = EmbeddingJournal(journal_dir(index_dir, model.name, model.fingerprint(manifest)), dim)
    for keys, batch in journal.batches():
        report.resumed += sum(place(key, vector) for key, vector in zip(keys, batch))

    missing = sorted(targets, key=lambda k: -len(texts[k]))  # longest first: batches pad alike
    notify(
        f"{sum(isinstance(d, Chunked) for d in documents)} document(s) to embed: {len(missing)} new texts"
        + (f", {report.resumed} more already embedded by an interrupted run" if report.resumed else "")
        + f" (the index will hold {n_passages} passages, {n_sentences} sentences)"
    )
    if ray is not None:
        _embed_on_ray(missing, texts, model.name, ray, journal, place, progress, report)
        return vectors, sentence_vectors
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start : start + EMBED_BATCH]
        def within(done: int, _total: int, start: int = start) -> None:
            if progress:
                progress(start + done, len(missing))

        embedded = model.embedder.embed_passages([texts[k] for k in batch], progress=within)
        journal.add(batch, embedded)
        for key, vector in zip(batch, embedded):
            place(key, vector)
        report.embedded += len(batch)
        if progress:
            progress(start + len(batch), len(missing))
    return vectors, sentence_vectors


def _embed_on_ray(missing: list[bytes], texts: dict[bytes, str], model_name: str, ray: RayOptions,
                  journal: EmbeddingJournal, place, progress, report) -> None:
    """Embed the ``missing`` texts on Ray, journalling and placing each batch as it comes back."""
    from qa.ray_embed import RayUnavailable, embed_on_ray

    try:
        for positions, embedded in embed_on_ray([texts[k] for k in missing], model_name, ray.address,
                                                workers=ray.workers, batch_size=EMBED_BATCH):
            keys = [missing[i] for i in positions]
            journal.add(keys, embedded)
            for key, vector in zip(keys, embedded):
                place(key, vector)
            report.embedded += len(keys)
            if progress:
                progress(report.embedded, len(missing))
    except RayUnavailable as exc:
        raise IndexingError(str(exc)) from None


def _write(index_dir, manifest, documents, vectors, sentence_vectors, roots, excluded, skip_records: dict,
           model: _Model, previous, now, backend: VectorBackend | None = None) -> None:
    passages = [p for d in documents for p in d.passages]
    if model.loaded:
        probe = model.fingerprint(manifest)
        same = previous is not None and np.array_equal(probe, recorded_probe(manifest))
        # An update by the model that built the index keeps its background when the sets
        # are not cached: embedding them is 400 texts, 15 s on the torch-free engine.
        backgrounds = background_vectors(model.embedder, probe, embed_missing=not same, notify=model.notify)
        if backgrounds is None:
            background_name, background = manifest["background"], previous.background
        else:
            background_name = closest_background(vectors, backgrounds)
            background = backgrounds[background_name]
        model_entry = {"name": model.name, "probe": [round(float(x), 6) for x in probe],
                       "max_tokens": int(model.embedder.max_tokens)}
        chunking = chunk_settings_for(model.embedder).to_dict()
    else:  # only removals: the previous model's entries stand
        background_name, background = manifest["background"], previous.background
        model_entry, chunking = manifest["model"], manifest["chunking"]
    new_manifest = {
        "created": manifest.get("created", now),
        "updated": now,
        "model": model_entry,
        "chunking": chunking,
        "background": background_name,
        "roots": roots,
        "excluded": excluded,
        "documents": [d.record for d in documents],
        "n_passages": len(passages),
        "terms": TERMS_VERSION,
        **skip_records,  # "passed_over" and "skipped"
    }
    lexicon = Lexicon.build([p.text for p in passages]).to_arrays()
    content = IndexContent(passages, vectors, [spans for d in documents for spans in d.sentence_spans],
                           sentence_vectors, lexicon, background)
    write_index(index_dir, new_manifest, content, backend)
    remove_journals(index_dir, journal_dir(index_dir, model_entry["name"], model_entry["probe"]))
