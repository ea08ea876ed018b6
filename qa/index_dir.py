"""The index directory: the names of its files, ``CURRENT``, its generations, the
writer lock, and the errors the store raises.

What every part of the store shares (see :mod:`qa.store` for the layout): reading
``CURRENT`` and small index files with bounds (never a FIFO, never ``/dev/zero``),
listing generations newest first, checking that the directory can be written, and
the OS lock that keeps two writers apart.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from qa.files import open_regular
from qa.manifest import CarriedLibrary

FORMAT_VERSION = 4
CURRENT = "CURRENT"
LOCK = ".lock"
MANIFEST = "manifest.json"
MANIFEST_SHA = "manifest.sha256"
# This user's HMAC of the manifest (qa/signing.py): whether qa may refresh the index
# from the paths its manifest names.
MANIFEST_SIG = "manifest.hmac"
MAX_SIGNATURE_BYTES = 256
# Index files are regular files of bounded size, or the index is damaged: CURRENT or
# a manifest linked to /dev/zero grew memory by gigabytes; a FIFO hung every read.
MAX_SMALL_FILE_BYTES = 4096
MAX_MANIFEST_BYTES = 256 << 20
VECTORS = "vectors.faiss"
VECTORS_NPY = "vectors.npy"
# Arrays of at least this size are memory-mapped when an index is read, not loaded.
MMAP_MIN_BYTES = 32 << 20
PASSAGES = "passages.jsonl"
BACKGROUND = "background.npy"
SENTENCES = "sentences.npy"
LEXICON = "lexicon.npz"
CORE_FILES = (VECTORS_NPY, PASSAGES, SENTENCES, LEXICON, BACKGROUND)
"""The files of every generation, whatever its vector store."""
DATA_FILES = (VECTORS, *CORE_FILES)
"""The files of a generation whose vectors are searched by FAISS (the default store)."""
FAISS_RECORD = {"store": "faiss", "files": [VECTORS]}
"""The vector record of an index written before vector stores could be chosen."""
GENERATIONS_KEPT = 2


class StoreError(Exception):
    """Something is wrong with an index directory; the message is one line for the user."""


class IndexMissing(StoreError):
    """There is no index in the directory yet."""


class IndexCorrupt(StoreError):
    """An index file is damaged, truncated, or does not belong to this index."""


class IndexOldFormat(IndexCorrupt):
    """The index was written by an older qa.

    ``library`` is what its manifest (checksum verified) says about its documents,
    which can be indexed again (:class:`qa.manifest.CarriedLibrary`).
    """

    def __init__(self, message: str, library: "CarriedLibrary"):
        super().__init__(message)
        self.library = library


class IndexBusy(StoreError):
    """Another process is writing the index."""


class IndexDiskFull(StoreError):
    """The file system filled up (or the user's quota) while a new generation was
    written; it was removed, and the previous index is current and intact."""

    def __init__(self, message: str = "disk full while writing the index; the previous index is unchanged"):
        super().__init__(message)
        self.reason = message


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Return whether ``exc`` says the file system or the quota is full.

    An ``OSError`` says so by its errno; FAISS, which writes from C++, raises a
    ``RuntimeError`` whose text ends with the system's message ("No space left on
    device"), so that text counts too.
    """
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, (OSError, RuntimeError)) and any(os.strerror(code) in str(exc) for code in DISK_FULL_ERRNOS)


class IndexReadOnly(StoreError):
    """Files can't be created in the index directory (a read-only mount, no write
    permission); it can still be read. ``reason`` is the system's word for why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
"""Errors that say a directory can be read but not written."""


def _file_in_the_way(index_dir: Path) -> Path | None:
    """Return ``index_dir``, or the ancestor of it, that exists as something other than a
    directory (a regular file where the index should be); None if there is none."""
    for path in (index_dir, *index_dir.parents):
        try:
            if path.exists():
                return None if path.is_dir() else path
        except OSError:
            return None
    return None


def _not_a_directory(index_dir: Path, blocker: Path, doing: str) -> StoreError:
    """The one-line error for an index directory that is a file, or lies under one."""
    if blocker == index_dir:
        return StoreError(f"{index_dir} is not a directory")
    return StoreError(f"cannot {doing} the index directory {index_dir}: {blocker} is not a directory")


def _read_current(index_dir: Path) -> tuple[str, str]:
    try:
        words = read_bounded(index_dir / CURRENT, MAX_SMALL_FILE_BYTES).decode("ascii").split()
    except FileNotFoundError:
        if generations(index_dir):  # generations without a pointer: damaged, not new
            raise IndexCorrupt(f"index at {index_dir} is damaged: {CURRENT} is missing") from None
        raise IndexMissing(f"no index in {index_dir} yet") from None
    except NotADirectoryError as exc:
        blocker = _file_in_the_way(index_dir)
        if blocker is not None:
            raise _not_a_directory(index_dir, blocker, "read") from None
        raise IndexCorrupt(f"index at {index_dir} is damaged: cannot read {CURRENT} ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"index at {index_dir} is damaged: cannot read {CURRENT} ({exc})") from None
    if len(words) != 2 or not words[0].startswith("gen-") or "/" in words[0]:
        raise IndexCorrupt(f"index at {index_dir} is damaged: {CURRENT} is not valid")
    return words[0], words[1]


def read_bounded(path: Path, limit: int = 64 << 20) -> bytes:
    """Return the bytes of an index file that must be a regular file of at most ``limit``
    bytes; raise ``OSError`` otherwise (a FIFO, ``/dev/zero``, a huge file planted in the
    index directory never hangs qa or fills its memory)."""

    if path.parent.name.startswith("gen-") and os.path.islink(path.parent):  # a generation is never a link
        raise OSError(errno.ELOOP, "a generation folder that is a symbolic link", str(path.parent))
    with open_regular(path, follow_links=False) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, "larger than an index file can be", str(path))
    return data


def _generation_time(name: str) -> int:
    """The time in a generation's name (``gen-<ns>-<pid>``), 0 if it has none."""
    parts = name.split("-")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def generations(index_dir: Path) -> list[str]:
    """Return the names of the generation directories in ``index_dir``, newest first.

    Newest by the time in the name (``gen-<ns>-<pid>``); none for a missing directory.
    What a damaged index is recovered from, and what clean-up chooses among.
    """
    try:
        found = [p.name for p in index_dir.glob("gen-*") if p.is_dir()]
    except OSError:
        return []
    return sorted(found, key=lambda name: (_generation_time(name), name), reverse=True)


def _remove_tmp(index_dir: Path) -> None:
    for leftover in index_dir.glob(".tmp-*"):
        _remove_entry(leftover)


def _remove_entry(path: Path) -> None:
    """Delete a file or folder of the index directory; a symbolic link is deleted as a
    link, never followed (shutil.rmtree opens a link's target before refusing it)."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def ensure_writable(index_dir: Path) -> None:
    """Create ``index_dir`` if needed and check that files can be written in it.

    Raises :class:`StoreError` with a one-line reason otherwise ("... is not a
    directory" for a regular file in the way); :class:`IndexReadOnly` when the
    directory exists but the system refuses to create files in it.
    """
    blocker = _file_in_the_way(index_dir)
    if blocker is not None:
        raise _not_a_directory(index_dir, blocker, "write")
    try:
        index_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the probe exclusively (O_EXCL, O_NOFOLLOW) under a fresh name:
        # a link planted at a predictable ".tmp-probe-PID" truncated the file it named.
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=index_dir)
        os.close(fd)
        # a concurrent writer's clean-up of ".tmp-*" leftovers may have removed the
        # probe already; the directory was writable all the same.
        Path(probe).unlink(missing_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno in (errno.EEXIST, errno.ELOOP) and os.path.islink(index_dir):
            reason = "it is a symbolic link that leads nowhere (a loop, or a broken link)"
        message = f"cannot write the index directory {index_dir}: {reason}"
        if exc.errno in DISK_FULL_ERRNOS:
            raise IndexDiskFull() from None
        if exc.errno in READ_ONLY_ERRNOS and index_dir.is_dir():
            raise IndexReadOnly(message, reason) from None
        raise StoreError(message) from None


LOCK_POLL_SECONDS = 0.05
"""How often a writer waiting for the lock tries again."""


@contextmanager
def writer_lock(index_dir: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold the index's writer lock for the duration of the ``with`` block.

    The lock is an OS file lock (``flock``) on ``.lock``, released by the kernel when
    its holder dies, so a killed build never leaves the index locked. Waits up to
    ``timeout`` seconds for another writer, then raises :class:`IndexBusy`. The lock
    file is opened with ``O_NOFOLLOW`` and checked on the opened descriptor: a link or
    anything but a regular file at ``.lock`` is a one-line :class:`StoreError`, never
    followed (a check of the path before opening it by name left a moment in which a
    planted link was followed, and its target truncated).
    """
    import fcntl

    ensure_writable(index_dir)
    fd = _open_lock_file(index_dir / LOCK)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"another qa process is writing the index in {index_dir}; try again when it is done"
                    ) from None
                time.sleep(min(LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    """Open (creating it, mode 0600) the lock file at ``path``; return its descriptor.

    Never follows a link and never blocks (a FIFO is refused, not waited on); raises a
    one-line :class:`StoreError` for anything but a regular file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link (or a loop of them)
            raise StoreError(f"{path} is a symbolic link, not qa's lock file: remove it and try again") from None
        if exc.errno == errno.EISDIR:
            raise StoreError(f"{path} is not a regular file, not qa's lock file: remove it and try again") from None
        if exc.errno in DISK_FULL_ERRNOS:
            raise IndexDiskFull() from None
        raise StoreError(f"cannot use the lock file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device can't be locked: waits forever
        os.close(fd)
        raise StoreError(f"{path} is not a regular file, not qa's lock file: remove it and try again")
    return fd
