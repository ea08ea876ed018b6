"""What an index update is told and what it reports: its errors, options and report.

Shared by the modules of an update (:mod:`qa.indexer` and the steps it calls), and
importable without any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from qa.discover import Skipped
from qa.embedder import Embedder

Notify = Callable[[str], None]
PassageProgress = Callable[..., None]
"""``progress(done, total, step="embedding")``: ``done`` of ``total`` texts embedded, or of
files read when ``step`` is "reading files"; shown as a bar per step."""


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


@dataclass
class UpdateRequest:
    """What an update was asked to do (see :func:`qa.indexer.update_index`): inputs to
    add, the model by name or loaded, paths to remove, whether to replace the library,
    the callbacks, the roots carried over from an index that can't be loaded, whether
    the skipped files are shown, Ray, and the vector store's URI."""

    inputs: list[str | Path]
    model_name: str | None
    embedder: Embedder | None
    remove: list[str | Path]
    replace_all: bool
    notify: Notify
    progress: PassageProgress | None
    carried: Sequence[str] = ()
    skips_shown: bool = True
    ray: RayOptions | None = None
    store: str | None = None
