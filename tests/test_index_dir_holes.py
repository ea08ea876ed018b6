"""Two holes in an index directory someone else can write (issue 14, after items 1 and 3).

- Dropping old generations let a generation's vector store free what it holds outside
  the directory (a Milvus collection) on the word of any intact manifest, even one
  this user's qa did not sign: a planted generation could name a collection of the
  user's and have it dropped. Only a signed manifest is trusted for that now.
- The ``.lock`` link check was made on the path before the lock file was opened by
  name: a link planted between the two was followed (and its target truncated). The
  lock file is now opened with ``O_NOFOLLOW`` and the opened descriptor checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time

import pytest
from typer.testing import CliRunner

from conftest import FAKE_MODEL
from qa import vectorstore
from qa.cli import app
from qa.store import CURRENT, LOCK, MANIFEST, MANIFEST_SHA, MANIFEST_SIG, IndexBusy, StoreError, writer_lock

runner = CliRunner()


class RecordingBackend:
    """A vector store whose ``drop`` only records what it was asked to drop."""

    name = "recording"
    dropped: list[dict] = []

    def __init__(self, uri: str):
        self.uri = uri

    def drop(self, record: dict) -> None:
        RecordingBackend.dropped.append(record)


@pytest.fixture
def recording_store(monkeypatch):
    import qa.faiss_store  # noqa: F401 - registered in the real table, not only in the copy below
    monkeypatch.setattr(vectorstore, "_BACKENDS", dict(vectorstore._BACKENDS))
    vectorstore.register_vector_backend("recording", RecordingBackend)
    RecordingBackend.dropped = []
    return RecordingBackend


def plant_generation(index_dir, name: str, collection: str, signed: bool) -> None:
    """Copy the current generation to ``name`` with a manifest naming ``collection`` of
    the recording store, checksums fixed up (as anyone who can write the folder can);
    signed with this user's key only when ``signed``."""
    from qa.signing import sign

    current = index_dir / (index_dir / CURRENT).read_text().split()[0]
    target = index_dir / name
    shutil.copytree(current, target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["vectors"] = {**manifest["vectors"], "store": "recording", "uri": "recording:their-server",
                           "collection": collection}
    data = json.dumps(manifest, indent=1).encode()
    (target / MANIFEST).write_bytes(data)
    (target / MANIFEST_SHA).write_text(hashlib.sha256(data).hexdigest() + "\n")
    if signed:
        (target / MANIFEST_SIG).write_text(sign(data) + "\n")
    else:
        (target / MANIFEST_SIG).unlink()


def test_old_generations_drop_a_store_collection_only_on_a_signed_manifest(fake_model, tmp_path, recording_store):
    doc = tmp_path / "a.txt"
    doc.write_text("Drones came from Iran.\n")
    index_dir = tmp_path / "idx"
    assert runner.invoke(app, ["index", "--index-dir", str(index_dir), "--model", FAKE_MODEL, str(doc)]).exit_code == 0
    plant_generation(index_dir, "gen-1-1", "the_users_precious_collection", signed=False)
    plant_generation(index_dir, "gen-2-1", "qa_own_old_collection", signed=True)
    doc.write_text("Drones came from Iran in the spring.\n")  # a change: the next run writes, then cleans up
    assert runner.invoke(app, ["index", "--index-dir", str(index_dir)]).exit_code == 0
    assert not (index_dir / "gen-1-1").exists() and not (index_dir / "gen-2-1").exists()
    assert [record["collection"] for record in recording_store.dropped] == ["qa_own_old_collection"]


def test_a_lock_file_swapped_for_a_link_after_any_check_is_never_followed(tmp_path, monkeypatch):
    """A link planted at ``.lock`` at the last moment: after any look at the path, just
    before the lock file is opened."""
    index_dir, victim = tmp_path / "idx", tmp_path / "victim.txt"
    index_dir.mkdir()
    victim.write_text("precious")
    real_open = os.open

    def plant_then_open(path, flags, *args, **kwargs):
        if str(path) == str(index_dir / LOCK) and not os.path.islink(path):
            if os.path.exists(path):
                os.unlink(path)
            os.symlink(victim, path)
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", plant_then_open)
        with pytest.raises(StoreError, match="is a symbolic link, not qa's lock file"):
            with writer_lock(index_dir, timeout=1):
                pass
    assert victim.read_text() == "precious"


def test_the_writer_lock_still_excludes_and_waits(tmp_path):
    index_dir = tmp_path / "idx"
    held, release = threading.Event(), threading.Event()

    def holder():
        with writer_lock(index_dir):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    started = time.monotonic()
    with pytest.raises(IndexBusy):
        with writer_lock(index_dir, timeout=0.3):
            pass
    assert 0.25 < time.monotonic() - started < 5
    threading.Timer(0.3, release.set).start()
    with writer_lock(index_dir, timeout=10):  # waits for the holder, then holds it
        assert not thread.is_alive() or release.is_set()
    thread.join(10)
    assert (index_dir / LOCK).is_file() and not (index_dir / LOCK).is_symlink()
    assert oct(os.stat(index_dir / LOCK).st_mode & 0o777) == oct(0o600)
