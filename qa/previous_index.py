"""Which index an update starts from: the current one, one recovered, or a document list.

:func:`previous_snapshot` reads the index under the writer lock. An index of an older
format, or one with a damaged data file, is rebuilt from its manifest's document
list; one whose ``CURRENT`` or manifest is damaged from the newest intact generation
(:func:`qa.store.newest_intact_generation`). An index that can't be recovered is one
error carrying its repair hint (:func:`rebuild_message`), which ``qa ask`` says too.
"""

from __future__ import annotations

from pathlib import Path

from qa.index_report import IndexingError, Notify
from qa.manifest import CarriedLibrary
from qa.store import (
    IndexCorrupt,
    IndexMissing,
    IndexOldFormat,
    Snapshot,
    generation_signed,
    make_current,
    newest_intact_generation,
    read_index,
    read_library,
)


def previous_snapshot(index_dir: Path, notify: Notify,
                      has_inputs: bool = False) -> tuple[Snapshot | None, CarriedLibrary, bool]:
    """Return the index to update (None if there is none or it can't be loaded), and what
    an index that can't be loaded says about its documents, which are indexed again
    (older format, or damaged with a trustworthy manifest; else an empty library).

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
        return snapshot, CarriedLibrary(), snapshot.signed
    except IndexMissing:
        return None, CarriedLibrary(), True
    except IndexOldFormat as exc:
        signed = generation_signed(index_dir)
        if signed:
            notify("the index was written by an older qa: indexing its documents again")
        return None, exc.library, signed
    except IndexCorrupt as exc:
        library = read_library(index_dir)
        if library is not None:  # a damaged data file; the document list is intact
            signed = generation_signed(index_dir)
            if signed:
                notify(f"{exc}; building a new index from its documents")
            return None, library, signed
        return _recovered(index_dir, exc, notify, has_inputs)


def _recovered(index_dir: Path, exc: IndexCorrupt, notify: Notify,
               has_inputs: bool) -> tuple[Snapshot | None, CarriedLibrary, bool]:
    """What to rebuild from when ``CURRENT`` or the current manifest can't be trusted:
    see :func:`previous_snapshot`."""
    intact = newest_intact_generation(index_dir)
    if intact is None:
        if not has_inputs:
            raise IndexingError(rebuild_message(exc, f" --index-dir {index_dir}"))
        notify(f"{damaged_index_message(exc)}: building a new index from the paths given")
        return None, CarriedLibrary(), True
    if not intact.signed:
        return None, intact.library, False
    count = intact.library.documents
    when = f", written {intact.library.written}" if intact.library.written else ""
    notify(f"{exc}; rebuilding it from the document list of {intact.generation} "
           f"({count} document{'s' * (count != 1)}{when}), the newest intact one")
    if intact.snapshot is None:  # its data files are damaged too, or of an older format
        return None, intact.library, True
    make_current(index_dir, intact)
    return intact.snapshot, CarriedLibrary(), True


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
