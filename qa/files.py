"""Files read and written with care: regular files only, checksums, and fsync.

The small file operations that the index store, the document reader and the model
builder share: opening a file only if it is a regular one (a FIFO or a device never
hangs qa), the SHA-256 of a file, and making a write or a rename durable. Nothing
heavy is imported here.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotARegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory, not a file to read."""


def open_regular(path: Path | str, follow_links: bool = True) -> BinaryIO:
    """Open a file for binary reading, only if it is a regular file; return the handle.

    The check is made on the opened descriptor (``fstat``), not on the path before
    opening it: a file replaced by a FIFO between the two would otherwise block the
    open (a FIFO's open waits for a writer) or the read forever. The open itself is
    non-blocking for that reason; reads of the regular file it returns block as usual.
    Raises :class:`NotARegularFile` (an ``OSError``) for anything else, and the
    ``OSError`` of the open (missing, permission denied, a link loop) as is. Without
    ``follow_links`` a symbolic link is not followed but refused (``ELOOP``): qa's own
    index files are never links.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: Path | str, follow_links: bool = True, size: object = None) -> str:
    """Return the hex SHA-256 of a regular file's bytes.

    Takes the path, whether a symbolic link may be followed (see :func:`open_regular`),
    and optionally the size the file should have: when ``size`` is an int and the file
    is another size, returns "" without reading it (it can't match a recorded
    checksum). Raises :class:`NotARegularFile` for a FIFO or a device, which would
    hang or never end, and ``OSError`` when the file can't be opened.
    """
    with open_regular(path, follow_links=follow_links) as handle:
        if isinstance(size, int) and os.fstat(handle.fileno()).st_size != size:
            return ""
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fsync_dir(path: Path | str, ignore_errors: bool = False) -> None:
    """Flush a directory's entries to disk, so that a rename or a new file in it survives
    a power loss. With ``ignore_errors``, a directory that can't be opened or synced
    (some file systems refuse) is passed over instead of raising ``OSError``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if ignore_errors:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not ignore_errors:
            raise
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` as the whole of a new file at ``path`` and flush it to disk."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
