"""Finding what a damaged index can be recovered from: the newest trusted generation.

When ``CURRENT`` or the current manifest is damaged, the library's document list is
not lost: :func:`newest_intact_generation` finds the newest generation whose manifest
still matches the checksum recorded beside it, and (with ``load``) verifies and loads
its files, so that the index can be made current again or rebuilt from its list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from qa.index_dir import (
    MANIFEST,
    MANIFEST_SHA,
    MAX_MANIFEST_BYTES,
    MAX_SMALL_FILE_BYTES,
    IndexCorrupt,
    IndexOldFormat,
    StoreError,
    _read_current,
    generations,
    read_bounded,
)
from qa.index_read import Snapshot, _check_manifest, _read_generation, generation_signed
from qa.manifest import CarriedLibrary, Manifest


@dataclass
class IntactGeneration:
    """A generation whose manifest can be trusted (see :func:`newest_intact_generation`).

    ``library`` is what its manifest says about its documents; ``manifest`` is the
    manifest itself when it is of this qa's format (None for an older one);
    ``snapshot`` is the whole generation, loaded and verified, when its data files are
    intact and of this format (else None: only its document list can be trusted).
    """

    generation: str
    library: CarriedLibrary
    manifest: Manifest | None
    manifest_sha: str
    snapshot: Snapshot | None
    signed: bool = False  # written by this user's qa (see qa.signing)


def _trusted_shas(index_dir: Path, generation: str) -> set[str]:
    """The checksums a generation's manifest may match: its own record, and ``CURRENT``'s
    when ``CURRENT`` names it. Empty for a generation written before qa recorded one."""
    shas = set()
    try:
        words = read_bounded(index_dir / generation / MANIFEST_SHA, MAX_SMALL_FILE_BYTES).decode("ascii").split()
        if len(words) == 1:
            shas.add(words[0])
        else:
            shas.add("unreadable")  # a damaged record trusts nothing
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError):
        shas.add("unreadable")
    try:
        current, sha = _read_current(index_dir)
        if current == generation:
            shas.add(sha)
    except StoreError:
        pass
    return shas


def _intact_manifest(index_dir: Path, generation: str,
                     data: bytes | None = None) -> tuple[Manifest | None, CarriedLibrary, str] | None:
    """Return a generation's manifest (None for an older format), what it says about its
    library, and its checksum, if it passes :func:`read_index`'s manifest checks
    (checksum, JSON, shape, a format this qa knows); else None. ``data``: the
    manifest's bytes when already read (and checked for something else)."""
    try:
        data = read_bounded(index_dir / generation / MANIFEST, MAX_MANIFEST_BYTES) if data is None else data
    except OSError:
        return None
    sha = hashlib.sha256(data).hexdigest()
    trusted = _trusted_shas(index_dir, generation)
    if trusted and sha not in trusted:
        return None
    try:
        manifest = _check_manifest(index_dir, data, sha)
    except IndexOldFormat as exc:
        return None, exc.library, sha
    except IndexCorrupt:
        return None
    return manifest, CarriedLibrary.of(manifest), sha


def newest_intact_generation(index_dir: Path, load: bool = True) -> IntactGeneration | None:
    """Return the newest generation in ``index_dir`` whose manifest can be trusted, or None.

    For an index whose ``CURRENT`` or current manifest is damaged: the document list
    (roots, exclusions, documents) of that generation is what the index is rebuilt
    from, instead of losing the library. A manifest is trusted when it matches the
    checksum recorded beside it (or ``CURRENT``'s, for the generation ``CURRENT``
    names), and is valid JSON of a known format; a generation of an older qa, with no
    record, is taken on the JSON checks alone. With ``load``, the generation's data
    files are verified and loaded too (``snapshot``), for their vectors to be reused.
    """
    for generation in generations(index_dir):
        found = _intact_manifest(index_dir, generation)
        if found is None:
            continue
        manifest, library, sha = found
        snapshot = None
        if load and manifest is not None:
            try:
                snapshot = _read_generation(index_dir, generation, sha)
            except (StoreError, OSError):
                snapshot = None
        return IntactGeneration(generation, library, manifest, sha, snapshot,
                                generation_signed(index_dir, generation))
    return None
