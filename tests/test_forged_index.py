"""An index directory someone else can write must never make qa read, copy or damage
what the user did not ask for (issue 14, item 1: manifests signed per user)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.cli import REFUSED_EXIT  # qa ask exits 3 when nothing answers
from qa.cli import app
from qa.signing import key_path
from qa.store import CURRENT, MANIFEST, MANIFEST_SHA

from conftest import FAKE_MODEL

runner = CliRunner()


def forge(index_dir: Path, edit) -> None:
    """Rewrite the current manifest with ``edit`` and fix every checksum, as anyone who
    can write the directory can; the signature can't be fixed without the user's key."""
    generation = (index_dir / CURRENT).read_text().split()[0]
    path = index_dir / generation / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    data = json.dumps(manifest, indent=1).encode()
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (index_dir / generation / MANIFEST_SHA).write_text(f"{sha}\n")
    (index_dir / CURRENT).write_text(f"{generation} {sha}\n")


@pytest.mark.slow  # many real qa processes: over 10 s
def test_a_forged_manifest_never_makes_ask_read_a_private_file(fake_model, tmp_path):
    docs, private = tmp_path / "docs", tmp_path / "home" / ".ssh"
    docs.mkdir()
    private.mkdir(parents=True)
    (docs / "a.txt").write_text("Drones came from Iran in the spring.\n")
    key = private / "id_ed25519"
    key.write_text("PRIVATE KEY material secret words\n")
    key.chmod(0o600)
    index_dir = tmp_path / "shared-index"
    assert runner.invoke(app, ["index", "--index-dir", str(index_dir), "--model", FAKE_MODEL, str(docs)]).exit_code == 0

    def point_at_the_key(manifest):
        manifest["documents"][0]["source"] = str(key)
        manifest["documents"][0]["sha256"] = "0" * 64
        manifest["roots"] = [str(private)]

    forge(index_dir, point_at_the_key)

    asked = runner.invoke(app, ["ask", "--index-dir", str(index_dir), "--json", "private key secret"])
    assert asked.exit_code == REFUSED_EXIT, asked.output
    assert "PRIVATE" not in asked.stdout and "not written by your qa" in asked.stderr
    assert asked.stderr.count("not written by your qa") == 1
    for generation in index_dir.glob("gen-*"):
        assert b"PRIVATE" not in (generation / "passages.jsonl").read_bytes()
    chat = runner.invoke(app, ["chat", "--index-dir", str(index_dir)], input="private key\nsecret words\n")
    assert chat.exit_code == 0 and "PRIVATE" not in chat.stdout, chat.output
    indexed = runner.invoke(app, ["index", "--index-dir", str(index_dir)])
    assert indexed.exit_code == 1 and "not written by your qa" in indexed.output
    assert "PRIVATE" not in json.dumps([p.read_text(errors="replace") for p in index_dir.glob("gen-*/passages.jsonl")])
    # the user makes it theirs from paths they name: then it is refreshed as usual
    mine = runner.invoke(app, ["index", "--index-dir", str(index_dir), "--replace", str(docs)])
    assert mine.exit_code == 0, mine.output
    (docs / "b.txt").write_text("Tea grows on the hills.\n")
    fresh = runner.invoke(app, ["ask", "--index-dir", str(index_dir), "tea hills"])
    assert fresh.exit_code == 0 and "b.txt" in fresh.stdout and "not written" not in fresh.stderr, fresh.output


def test_the_signing_key_is_private_and_made_once(fake_model, tmp_path):
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL, str(tmp_path / "a.txt")]).exit_code == 0
    path = key_path()
    first = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) == 32
    assert runner.invoke(app, ["index", "--replace", str(tmp_path / "a.txt")]).exit_code == 0
    assert path.read_bytes() == first


def test_an_index_signed_with_another_users_key_is_foreign(fake_model, tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL, str(tmp_path / "a.txt")]).exit_code == 0
    monkeypatch.setenv("QA_STATE_DIR", str(tmp_path / "someone-else"))
    (tmp_path / "a.txt").write_text("Tea grows on the hills.\n")
    asked = runner.invoke(app, ["ask", "tea hills"])
    assert asked.exit_code == REFUSED_EXIT and "not written by your qa" in asked.stderr
    assert "Tea" not in asked.stdout  # answered from the index as it is, never refreshed


def test_index_directories_are_0700_and_files_0600(fake_model, tmp_path):
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    index_dir = tmp_path / "new" / "index"
    result = runner.invoke(app, ["index", "--index-dir", str(index_dir), "--model", FAKE_MODEL, str(tmp_path / "a.txt")])
    assert result.exit_code == 0, result.output
    for path in [index_dir, *index_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_a_lock_file_that_is_a_symlink_is_one_line_and_its_target_untouched(fake_model, tmp_path):
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    index_dir, victim = tmp_path / "idx", tmp_path / "victim.txt"
    index_dir.mkdir()
    victim.write_text("precious")
    (index_dir / ".lock").symlink_to(victim)
    result = runner.invoke(app, ["index", "--index-dir", str(index_dir), "--model", FAKE_MODEL, str(tmp_path / "a.txt")])
    assert result.exit_code == 1 and "is a symbolic link, not qa's lock file" in result.output, result.output
    assert result.output.count("\n") == 1 and victim.read_text() == "precious"
    (index_dir / ".lock").unlink()
    (index_dir / ".lock").symlink_to(index_dir / ".lock")  # a loop: was OSError Errno 40
    looped = runner.invoke(app, ["index", "--index-dir", str(index_dir), "--model", FAKE_MODEL, str(tmp_path / "a.txt")])
    assert looped.exit_code == 1 and "symbolic link" in looped.output, looped.output


def test_a_journal_name_linked_outside_is_never_written_or_emptied(fake_model, tmp_path):
    from qa.journal import EmbeddingJournal, remove_journals

    index_dir, outside = tmp_path / "idx", tmp_path / "outside"
    index_dir.mkdir()
    outside.mkdir()
    (outside / "batch-0000.npz").write_bytes(b"someone's file")
    journal = index_dir / ".journal-0123"
    journal.symlink_to(outside)
    import numpy as np

    EmbeddingJournal(journal, 4).add([b"k" * 16], np.ones((1, 4), dtype=np.float32))
    assert list(EmbeddingJournal(journal, 4).batches()) == []
    remove_journals(index_dir, journal)
    assert sorted(os.listdir(outside)) == ["batch-0000.npz"] and not journal.exists()


def test_links_inside_the_index_are_never_followed_for_reads_or_deletes(fake_model, tmp_path):
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    index_dir, outside = tmp_path / "idx", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    assert runner.invoke(app, ["index", "--index-dir", str(index_dir), "--model", FAKE_MODEL,
                               str(tmp_path / "a.txt")]).exit_code == 0
    generation = (index_dir / CURRENT).read_text().split()[0]
    vectors = index_dir / generation / "vectors.npy"
    copy = outside / "vectors.npy"
    copy.write_bytes(vectors.read_bytes())  # the same bytes: only the link itself is wrong
    vectors.unlink()
    vectors.symlink_to(copy)
    asked = runner.invoke(app, ["ask", "--index-dir", str(index_dir), "drones"])
    assert asked.exit_code == 1 and "vectors.npy is not a regular file" in asked.output, asked.output
    (index_dir / ".tmp-gen-1-1").symlink_to(outside)  # a leftover to clean up
    os.remove(index_dir / ".lock")
    os.mkfifo(index_dir / ".lock")
    locked = runner.invoke(app, ["index", "--index-dir", str(index_dir)])
    assert locked.exit_code == 1 and "not a regular file" in locked.output, locked.output
    (index_dir / ".lock").unlink()
    runner.invoke(app, ["index", "--index-dir", str(index_dir), "--replace", str(tmp_path / "a.txt")])
    assert not (index_dir / ".tmp-gen-1-1").is_symlink() and (outside / "keep.txt").read_text() == "keep"
