"""A disk that fills up while the index is written (issue 14, item 12).

Whatever write runs out of room (FAISS, numpy, the passages, the manifest, an fsync,
``CURRENT``), `qa index` says one line, "disk full while writing the index; the
previous index is unchanged", and the previous index is exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FAKE_MODEL, FileProxy
from qa import files, index_write
from qa.cli import app
from qa.store import read_index

runner = CliRunner()
TESTS = Path(__file__).parent
MESSAGE = "Error: disk full while writing the index; the previous index is unchanged\n"


def qa(*args):
    return runner.invoke(app, list(args))


def digest(index_dir: Path) -> str:
    """Every file of the index directory (but the lock and journals), names and bytes."""
    out = hashlib.sha256()
    for path in sorted(index_dir.rglob("*")):
        relative = path.relative_to(index_dir)
        if relative.parts[0] in (".lock",) or relative.parts[0].startswith(".journal-"):
            continue
        out.update(str(relative).encode())
        if path.is_file():
            out.update(path.read_bytes())
    return out.hexdigest()


class DiskFull:
    """Writes into the index directory that fail with ``code`` once ``room`` bytes are used:
    Python files opened by the store (qa.index_write, qa.files), its temporary files, FAISS and fsync."""

    def __init__(self, monkeypatch, index_dir: Path, room: int, code: int = errno.ENOSPC):
        import faiss

        self.index_dir, self.room, self.code = str(index_dir.resolve()), room, code
        real_open, real_fdopen, real_fsync = open, os.fdopen, os.fsync
        real_write_index, real_mkstemp = faiss.write_index, tempfile.mkstemp
        full = self

        class Limited(FileProxy):
            def write(self, data):
                full.use(len(data) if isinstance(data, (bytes, str)) else memoryview(data).nbytes)
                return self.handle.write(data)

        def limited_open(path, mode="r", *args, **kwargs):
            handle = real_open(path, mode, *args, **kwargs)
            inside = str(os.path.realpath(path)).startswith(self.index_dir)
            return Limited(handle) if inside and any(c in mode for c in "wa+") else handle

        def limited_fdopen(fd, mode="r", *args, **kwargs):
            handle = real_fdopen(fd, mode, *args, **kwargs)
            return Limited(handle) if any(c in mode for c in "wa+") else handle

        def write_index(index, path, *args):
            full.use(index.ntotal * index.d * 4 + 100, faiss_text=True)  # about its size
            return real_write_index(index, path, *args)

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and str(os.path.realpath(dir)).startswith(self.index_dir):
                full.use(1)  # a new file takes a directory entry
            return real_mkstemp(*args, dir=dir, **kwargs)

        def fsync(fd):
            full.use(1)  # the blocks a file system allocates late, on fsync
            return real_fsync(fd)

        for writer in (index_write, files):  # the modules that write a generation's files
            monkeypatch.setattr(writer, "open", limited_open, raising=False)
        monkeypatch.setattr(os, "fdopen", limited_fdopen)  # the one os module, the store's too
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(faiss, "write_index", write_index)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        self.failed = False

    def use(self, size: int, faiss_text: bool = False) -> None:
        if self.room < size:
            self.failed = True
            if faiss_text:  # FAISS writes from C++ and says so in its message
                raise RuntimeError(f"Error: 'ret == (size)' failed: write error in x: 1 != 2 ({os.strerror(self.code)})")
            raise OSError(self.code, os.strerror(self.code))
        self.room -= size


@pytest.fixture
def two_corpora(fake_model, tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("Zebras\n\nThe zebra lives in Africa.\n", encoding="utf-8")
    second.write_text("\n\n".join(f"Paragraph {i} says penguin fact {i * 7}." for i in range(300)), encoding="utf-8")
    index_dir = tmp_path / "index"
    assert qa("index", str(first), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    return index_dir, second


@pytest.mark.parametrize("room", [0, 1, 100, 3_000, 20_000, 60_000, 90_000, 120_000, 150_000, 200_000])
def test_a_disk_that_fills_up_anywhere_in_the_write_is_one_line_and_the_old_index_stands(two_corpora, monkeypatch,
                                                                                          room):
    index_dir, second = two_corpora
    before = digest(index_dir)
    full = DiskFull(monkeypatch, index_dir, room)
    result = qa("index", str(second), "--index-dir", str(index_dir))
    monkeypatch.undo()
    if not full.failed:  # room enough for all of it: that write is fine too
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] + "\n" == MESSAGE, (result.stderr, result.exception)
    assert digest(index_dir) == before
    assert not list(index_dir.glob(".tmp-*"))
    assert [r["source"] for r in read_index(index_dir).manifest.to_json()["documents"]][0].endswith("first.txt")
    # room again: the next run writes it, the texts embedded before taken from the journal (when it had room)
    journalled = list(index_dir.glob(".journal-*/batch-*.npz"))
    result = qa("index", str(second), "--index-dir", str(index_dir))
    assert result.exit_code == 0, result.output
    assert ("from an interrupted run" in result.stdout) == bool(journalled), result.stdout
    assert len(read_index(index_dir).manifest.to_json()["documents"]) == 2


def test_every_kind_of_write_can_be_the_one_that_fails(two_corpora, monkeypatch):
    """The rooms above reach FAISS, numpy, the passages, the manifest and CURRENT."""
    index_dir, second = two_corpora
    reached = set()
    real_use = DiskFull.use

    def use(self, size, faiss_text=False):
        reached.add("faiss" if faiss_text else size)
        return real_use(self, size, faiss_text)

    monkeypatch.setattr(DiskFull, "use", use)
    DiskFull(monkeypatch, index_dir, 10**9)
    assert qa("index", str(second), "--index-dir", str(index_dir)).exit_code == 0
    assert "faiss" in reached and len(reached) > 5


def test_disk_quota_is_disk_full_too(two_corpora, monkeypatch):
    index_dir, second = two_corpora
    before = digest(index_dir)
    DiskFull(monkeypatch, index_dir, 50_000, code=errno.EDQUOT)
    result = qa("index", str(second), "--index-dir", str(index_dir))
    assert result.stderr.splitlines()[-1] + "\n" == MESSAGE and digest(index_dir) == before


def test_a_question_on_a_stale_index_with_a_full_disk_answers_as_it_is(two_corpora, monkeypatch):
    index_dir, _second = two_corpora
    first = Path(read_index(index_dir).manifest.to_json()["documents"][0]["source"])
    first.write_text("Zebras\n\nThe zebra lives in Kenya now.\n", encoding="utf-8")
    DiskFull(monkeypatch, index_dir, 0)
    result = qa("ask", "--json", "where does the zebra live", "--index-dir", str(index_dir))
    assert result.exit_code in (0, 3), result.output
    assert "Africa" in json.loads(result.stdout)["passages"][0]["text"]
    assert "can't be updated here (disk full while writing the index" in result.stderr


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
                        capture_output=True).returncode == 0
    return ok


@pytest.mark.slow
def test_a_real_full_file_system(tmp_path):
    """Once for real: a 512 KB tmpfs (root only), nearly filled after a first index."""
    mount = tmp_path / "tmpfs"
    if not _can_mount_tmpfs(mount):
        pytest.skip("needs root and tmpfs to mount a small file system")
    try:
        env = {**os.environ, "QA_STATE_DIR": str(tmp_path / "state")}
        fake_qa = [sys.executable, str(TESTS / "fake_qa.py")]
        first, second = tmp_path / "first.txt", tmp_path / "second.txt"
        first.write_text("Zebras\n\nThe zebra lives in Africa.\n", encoding="utf-8")
        second.write_text("\n\n".join(f"Paragraph {i} says penguin fact {i * 7}." for i in range(2000)),
                          encoding="utf-8")
        index_dir = mount / "index"
        done = subprocess.run([*fake_qa, "index", "--model", FAKE_MODEL, "--index-dir", str(index_dir), str(first)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        filler = mount / "filler"
        try:  # fill it, then leave 64 KB
            with open(filler, "wb", buffering=0) as handle:
                while True:
                    handle.write(b"\0" * 4096)
        except OSError:
            pass
        os.truncate(filler, max(0, filler.stat().st_size - 65536))
        before = digest(index_dir)
        result = subprocess.run([*fake_qa, "index", "--index-dir", str(index_dir), str(second)],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1
        assert result.stderr.endswith(MESSAGE) and "Traceback" not in result.stderr, result.stderr
        assert digest(index_dir) == before
        asked = subprocess.run([*fake_qa, "ask", "--index-dir", str(index_dir), "zebra"],
                               capture_output=True, text=True, env=env, timeout=120)
        assert asked.returncode == 0 and "Africa" in asked.stdout, asked.stderr
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
