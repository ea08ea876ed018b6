"""A document edited while `qa index` reads, chunks or embeds it (issue 14, item 15).

The manifest must record the size and modification time the file had *before* it was
read, so that the next `qa ask` sees the edit and answers from the new text, without
another `qa index`.
"""

from __future__ import annotations

import hashlib
import json
import os

from typer.testing import CliRunner

from conftest import FAKE_MODEL, FileProxy
from qa import update_plan  # where qa index chunks each document it reads
from qa.cli import app
from qa.store import read_index

runner = CliRunner()


def qa(*args):
    return runner.invoke(app, list(args))


def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "zebra.txt").write_text("Zebras\n\nThe zebra lives in Africa.\n", encoding="utf-8")
    (folder / "penguin.txt").write_text("Penguins\n\nPenguins live in Antarctica.\n", encoding="utf-8")
    return folder, tmp_path / "index"


def answer(index_dir, question):
    result = qa("ask", "--json", question, "--index-dir", str(index_dir))
    assert result.exit_code in (0, 3), result.output
    return json.loads(result.stdout)["passages"][0]["text"]


def edit(path, text):
    """Rewrite ``path``, then move its modification time a second on (a coarse clock
    could otherwise give the edit the time the file had when it was read)."""
    before = os.stat(path).st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_an_edit_between_reading_and_recording_is_seen_by_the_next_question(fake_model, tmp_path, monkeypatch):
    folder, index_dir = notes(tmp_path)
    real_chunk = update_plan.chunk_for_index

    def chunk_then_edit(document, embedder, *rest):  # the edit lands while the old text is chunked and embedded
        if document.source.endswith("zebra.txt"):
            edit(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Kenya now.\n")
        return real_chunk(document, embedder, *rest)

    monkeypatch.setattr(update_plan, "chunk_for_index", chunk_then_edit)
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    monkeypatch.setattr(update_plan, "chunk_for_index", real_chunk)
    record = next(r for r in read_index(index_dir).manifest.to_json()["documents"] if r["source"].endswith("zebra.txt"))
    assert record["sha256"] == hashlib.sha256(b"Zebras\n\nThe zebra lives in Africa.\n").hexdigest()
    assert record["size"] != os.stat(folder / "zebra.txt").st_size  # the size it had when read

    assert "Kenya" in answer(index_dir, "where does the zebra live")  # updated on the question, no qa index


def test_a_same_size_edit_between_reading_and_recording_is_seen_too(fake_model, tmp_path, monkeypatch):
    folder, index_dir = notes(tmp_path)
    real_chunk = update_plan.chunk_for_index

    def chunk_then_edit(document, embedder, *rest):
        if document.source.endswith("zebra.txt"):
            edit(folder / "zebra.txt", "Zebras\n\nThe zebra lives in Kenya.\n\n")  # as many bytes as "Africa."
        return real_chunk(document, embedder, *rest)

    assert len("Kenya.\n\n") == len("Africa.\n")
    monkeypatch.setattr(update_plan, "chunk_for_index", chunk_then_edit)
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    monkeypatch.setattr(update_plan, "chunk_for_index", real_chunk)
    assert "Kenya" in answer(index_dir, "where does the zebra live")


def test_an_edit_while_an_unchanged_file_is_hashed_is_seen_by_the_next_question(fake_model, tmp_path, monkeypatch):
    """A file touched but unchanged is hashed, found equal, and its new time recorded: the
    time must be the one seen before hashing, not after (when the edit has landed)."""
    folder, index_dir = notes(tmp_path)
    assert qa("index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    zebra = folder / "zebra.txt"
    stat = os.stat(zebra)
    os.utime(zebra, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched: hashed by the next run
    real_digest = hashlib.file_digest
    edited = []

    def digest_then_edit(handle, name):
        digest = real_digest(handle, name)
        if os.fstat(handle.fileno()).st_ino == stat.st_ino and not edited:  # the handle is unnamed (fdopen)
            edited.append(True)
            edit(zebra, "Zebras\n\nThe zebra lives in Kenya now.\n")
        return digest

    monkeypatch.setattr(hashlib, "file_digest", digest_then_edit)
    result = qa("index", str(folder), "--index-dir", str(index_dir))
    monkeypatch.setattr(hashlib, "file_digest", real_digest)
    assert result.exit_code == 0, result.output
    assert edited
    assert "Kenya" in answer(index_dir, "where does the zebra live")


def test_a_file_written_while_it_is_read_is_read_again(tmp_path, monkeypatch):
    """Bytes read while the file was being rewritten may mix two versions: the file is
    read again, and its recorded time is the one from before that read."""
    from qa import extract

    path = tmp_path / "note.txt"
    path.write_text("The old text.\n", encoding="utf-8")
    real_open = extract.open_regular
    reads = []

    class EditedOnFirstRead(FileProxy):
        def read(self, *args):
            data = self.handle.read(*args)
            reads.append(data)
            if len(reads) == 1:
                edit(path, "The new and longer text.\n")
            return data

    monkeypatch.setattr(extract, "open_regular", lambda p, *a, **k: EditedOnFirstRead(real_open(p, *a, **k)))
    document = extract.read_document(path)
    assert reads == [b"The old text.\n", b"The new and longer text.\n"]
    assert document.text == "The new and longer text.\n"
    after = os.stat(path)
    assert document.observed == (after.st_size, after.st_mtime_ns)
