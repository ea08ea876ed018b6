"""Finding the documents to index among files, directories and glob patterns."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterator, Sequence

from qa import extract
from qa.files import NotARegularFile, open_regular

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Skipped:
    """A path that is not indexed, and the one-line reason why."""

    path: str
    reason: str


@dataclass
class Discovery:
    """The files to index, in order, and the paths passed over with their reasons."""

    files: list[Path]
    skipped: list[Skipped]


def find_documents(inputs: Sequence[str | Path]) -> Discovery:
    """Find the document files named by ``inputs``: files, directories and globs.

    - An existing file is taken if its suffix is supported, or if it has another
      suffix (or none) and its first bytes look like text.
    - A directory is walked recursively, in sorted order. Files with a supported
      suffix are taken; other files are listed as skipped with the reason. Hidden
      files and directories (name starting with ".") and the files of a qa index
      (``CURRENT`` and ``gen-*``, see :func:`index_entries`) are passed over
      silently, in walks and globs alike, so an index kept in the folder it indexes
      doesn't hide that folder's documents. An index directory named itself, with
      nothing else in it, is skipped as "a qa index, not documents".
      Symbolic links are followed, but each real directory is walked at most once,
      so link loops end.
    - An input that doesn't exist but holds ``*``, ``?`` or ``[`` is a glob pattern
      (``**`` matches any number of directories); each match is taken as if it had
      been given itself. Hidden names match only a pattern starting with ".".
    - Empty files, files of ``MAX_FILE_BYTES`` or more, broken links, unreadable
      paths and inputs that match nothing are listed as skipped with the reason.

    Returns the files in input order (each directory's sorted), each file once
    (the same file reached through links or hard links, by device and inode), as
    spelled from the input. Never raises for a bad path.
    """
    finder = _Finder()
    for item in inputs:
        finder.add_input(Path(item))
    return Discovery(finder.files, finder.skipped)


@dataclass
class _Finder:
    """One run of :func:`find_documents`: what it found, and what it has seen.

    Files and directories are known by device and inode (what their resolved paths
    name, without resolving them); for directories, that ends symbolic link loops.
    A file passed over in a walk is looked at again when it is named explicitly.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    taken: set[tuple[int, int]] = field(default_factory=set)
    passed_over: dict[tuple[int, int], Skipped] = field(default_factory=dict)
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)

    def skip(self, path: Path, reason: str) -> Skipped:
        self.skipped.append(Skipped(str(path), reason))
        return self.skipped[-1]

    def add_input(self, path: Path) -> None:
        info = _stat(path)
        if isinstance(info, OSError):
            if info.errno == errno.ENOENT and not _is_link(path) and _GLOB_CHARS.search(str(path)):
                self.add_glob(path)
            else:
                self.skip(path, _stat_reason(path, info))
        elif stat.S_ISDIR(info.st_mode):
            found, skipped = len(self.files), len(self.skipped)
            self.walk(path, info)
            if is_index_dir(path) and (len(self.files), len(self.skipped)) == (found, skipped):
                self.skip(path, "a qa index, not documents")
        else:
            self.add_file(path, info, explicit=True)

    def add_glob(self, pattern: Path) -> None:
        matches = list(_glob(pattern))
        if not matches:
            self.skip(pattern, "no file matches")
        for path in matches:
            self.add_input(path)

    def walk(self, root: Path, info: os.stat_result) -> None:
        if not self.first_visit(info):
            return
        stack = [self.entries(root)]
        while stack:
            path = next(stack[-1], None)
            if path is None:
                stack.pop()
                continue
            info = _stat(path)
            if isinstance(info, OSError):
                self.skip(path, _stat_reason(path, info, missing="disappeared while indexing"))
            elif stat.S_ISDIR(info.st_mode):
                if self.first_visit(info):
                    stack.append(self.entries(path))
            else:
                self.add_file(path, info, explicit=False)

    def first_visit(self, info: os.stat_result) -> bool:
        key = (info.st_dev, info.st_ino)
        if key in self.seen_dirs:
            return False
        self.seen_dirs.add(key)
        return True

    def entries(self, directory: Path) -> Iterator[Path]:
        """Yield the paths of a directory's visible entries, sorted by name, without
        the files of a qa index it holds (see :func:`index_entries`)."""
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            self.skip(directory, _os_reason(exc))
            return
        own = index_entries(directory, names)
        for name in names:
            if not name.startswith(".") and name not in own:
                yield directory / name

    def add_file(self, path: Path, info: os.stat_result, explicit: bool) -> None:
        key = (info.st_dev, info.st_ino)
        if key in self.taken or (key in self.passed_over and not explicit):
            return
        reason = _file_problem(path, info, explicit)
        if reason is None:
            self.taken.add(key)
            self.files.append(path)
            if key in self.passed_over:
                self.skipped.remove(self.passed_over.pop(key))
        elif key not in self.passed_over:
            self.passed_over[key] = self.skip(path, reason)


_GENERATION = re.compile(r"gen-\d+-\d+")


def is_index_dir(directory: Path) -> bool:
    """Return True when ``directory`` holds a qa index: a ``CURRENT`` file and a
    ``gen-<time>-<pid>`` directory, the layout of :mod:`qa.store`.

    A folder being indexed may hold its own index (``--index-dir docs/index``), or
    another one; their files are not documents, and listing each as skipped on every
    run would bury what matters. Folder walks and globs pass over it; naming it is
    an error.
    """
    try:
        return (directory / "CURRENT").is_file() and any(
            _GENERATION.fullmatch(name) and (directory / name).is_dir() for name in os.listdir(directory))
    except OSError:  # unreadable: the walk reports it
        return False


def index_entries(directory: Path, names: Sequence[str]) -> set[str]:
    """Return which of a directory's entry ``names`` are qa's own index files: ``CURRENT``
    and the ``gen-*`` folders when the directory holds an index, else none.

    An index may be kept in the folder it indexes (``qa index --index-dir DOCS DOCS``):
    its documents are still found, its own files never are. (Its hidden ``.lock``,
    ``.tmp-*`` and ``.journal-*`` are passed over as every hidden name is.)
    """
    if "CURRENT" not in names or not is_index_dir(directory):
        return set()
    return {name for name in names if name == "CURRENT" or _GENERATION.fullmatch(name)}


def _file_problem(path: Path, info: os.stat_result, explicit: bool) -> str | None:
    """Return why a file can't be indexed, or None when it can."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    suffix = path.suffix.lower()
    supported = suffix in extract.SUPPORTED_SUFFIXES
    if not supported and not explicit:
        return _unsupported(suffix)
    if reason := extract.too_large(info.st_size):
        return reason
    if info.st_size == 0 and not _has_content(path):  # /proc files say 0 bytes and hold text
        return "empty file"
    if supported:
        return None if os.access(path, os.R_OK) else "permission denied"
    try:
        with open_regular(path) as handle:  # a file swapped for a FIFO since the stat must not block
            head = handle.read(extract.SNIFF_BYTES)
    except OSError as exc:
        return _os_reason(exc)
    return _unsupported(suffix) if extract.looks_binary(head) else None


def _has_content(path: Path) -> bool:
    """Return whether a file whose size reads 0 yields bytes (kernel pseudo-files do).

    An unreadable one counts as having content: reading it later says why it can't be read.
    """
    try:
        with open_regular(path) as handle:
            return bool(handle.read(1))
    except OSError:
        return True


def _unsupported(suffix: str) -> str:
    return f"unsupported format '{suffix}'" if suffix else "unsupported format (no file name extension)"


def _glob(pattern: Path) -> Iterator[Path]:
    """Yield the paths matching a glob pattern, in sorted order, each directory once per step.

    Walks only below the pattern's literal leading part, and never into hidden
    entries unless the pattern's part starts with ".".
    """
    parts = pattern.parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
    base = Path(*parts[:first]) if first else Path(".")
    seen: set[tuple[int, int, int]] = set()
    yield from _match(base, parts[first:], first == 0, seen)


def _match(directory: Path, parts: tuple[str, ...], relative: bool,
           seen: set[tuple[int, int, int]]) -> Iterator[Path]:
    # ``relative``: the pattern had no literal base, so "./" is left off the results.
    def child(name: str) -> Path:
        return Path(name) if relative else directory / name

    if not parts:
        yield directory
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        info = _stat(directory)
        if isinstance(info, OSError) or not stat.S_ISDIR(info.st_mode):
            return
        key = (info.st_dev, info.st_ino, len(parts))
        if key in seen:  # a link loop, or a directory reached twice
            return
        seen.add(key)
        yield from _match(directory, rest, relative, seen)
        for name in _listdir(directory, without_index=True):
            if not name.startswith(".") and os.path.isdir(directory / name):
                yield from _match(child(name), parts, False, seen)
        return
    for name in _listdir(directory, without_index=True):
        if fnmatchcase(name, head) and (head.startswith(".") or not name.startswith(".")):
            if not rest:
                yield child(name)
            elif os.path.isdir(directory / name):
                yield from _match(child(name), rest, False, seen)


def _listdir(directory: Path, without_index: bool = False) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    if without_index:
        own = index_entries(directory, names)
        names = [name for name in names if name not in own]
    return names


def _stat(path: Path) -> os.stat_result | OSError:
    try:
        return os.stat(path)
    except OSError as exc:
        return exc


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _stat_reason(path: Path, exc: OSError, missing: str = "no such file or directory") -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "broken symbolic link" if _is_link(path) else missing
    return _os_reason(exc)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(exc, NotARegularFile):
        return "not a regular file"
    if isinstance(exc, FileNotFoundError):
        return "disappeared while indexing"
    return (exc.strerror or type(exc).__name__).lower()
