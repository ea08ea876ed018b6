import json
import os
import re

import numpy as np
import pytest

from qa.documents import Passage
from qa.manifest import Manifest
from qa.lexical import Lexicon
from qa.store import (
    BACKGROUND,
    LEXICON,
    SENTENCES,
    IndexContent,
    CURRENT,
    MANIFEST,
    PASSAGES,
    VECTORS,
    IndexCorrupt,
    IndexMissing,
    StoreError,
    read_index,
    write_index,
    writer_lock,
)


def unit_rows(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def sample(n: int = 5, seed: int = 0, vectors=None):
    passages = [Passage(f"passage {i}", "/docs/a.txt", i * 10, i * 10 + 9, "Title") for i in range(n)]
    manifest = {"documents": [{"source": "/docs/a.txt", "title": "Title"}], "model": {"name": "m"}}
    spans = [[(i * 10, i * 10 + 4), (i * 10 + 5, i * 10 + 9)] for i in range(n)]
    content = IndexContent(
        passages,
        unit_rows(n, seed=seed) if vectors is None else vectors,
        spans,
        unit_rows(2 * n, seed=seed + 2),
        Lexicon.build([p.text for p in passages]).to_arrays(),
        unit_rows(3, seed=seed + 1),
    )
    return manifest, content


def test_round_trip_and_search_matches_brute_force(tmp_path):
    manifest, content = sample(20)
    vectors = content.vectors
    write_index(tmp_path, manifest, content)
    snap = read_index(tmp_path)
    assert snap.passages == content.passages
    assert snap.content.sentence_spans == content.sentence_spans
    assert np.allclose(snap.background, content.background)
    assert np.allclose(snap.content.sentence_vectors, content.sentence_vectors)
    assert np.allclose(snap.content.vectors, vectors)
    assert Lexicon.from_arrays(snap.content.lexicon).vocabulary == Lexicon.from_arrays(content.lexicon).vocabulary
    queries = unit_rows(4, seed=9)
    scores, ids = snap.search(queries, 5)
    brute = queries @ vectors.T
    for row in range(4):
        expected = np.argsort(-brute[row])[:5]
        assert list(ids[row]) == list(expected)
        assert np.allclose(scores[row], brute[row][expected], atol=1e-5)


def test_missing_index(tmp_path):
    with pytest.raises(IndexMissing):
        read_index(tmp_path / "nothing")


@pytest.mark.parametrize("name", [VECTORS, PASSAGES, BACKGROUND, SENTENCES, LEXICON, MANIFEST])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_files_are_detected(tmp_path, name, damage):
    write_index(tmp_path, *sample())
    gen = read_index(tmp_path).directory
    path = gen / name
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match=f"damaged: {re.escape(name)}"):
        read_index(tmp_path)


def test_file_swapped_from_another_index_is_detected(tmp_path):
    write_index(tmp_path / "a", *sample(seed=1))
    write_index(tmp_path / "b", *sample(seed=2))
    a, b = read_index(tmp_path / "a").directory, read_index(tmp_path / "b").directory
    (a / VECTORS).write_bytes((b / VECTORS).read_bytes())
    with pytest.raises(IndexCorrupt, match="vectors.faiss"):
        read_index(tmp_path / "a")


def test_garbage_current_is_detected(tmp_path):
    write_index(tmp_path, *sample())
    (tmp_path / CURRENT).write_text("../../etc x\n")
    with pytest.raises(IndexCorrupt):
        read_index(tmp_path)


def test_newer_format_is_refused(tmp_path):
    write_index(tmp_path, *sample())
    gen = read_index(tmp_path).directory
    manifest = json.loads((gen / MANIFEST).read_text())
    manifest["format_version"] = 99
    data = json.dumps(manifest).encode()
    (gen / MANIFEST).write_bytes(data)
    import hashlib

    (tmp_path / CURRENT).write_text(f"{gen.name} {hashlib.sha256(data).hexdigest()}\n")
    with pytest.raises(IndexCorrupt, match="format version 99"):
        read_index(tmp_path)


def test_rewrite_keeps_previous_generation_and_cleans_crash_leftovers(tmp_path):
    write_index(tmp_path, *sample(seed=1))
    first = read_index(tmp_path).directory
    (tmp_path / ".tmp-gen-1-1").mkdir()  # what a killed writer leaves behind
    write_index(tmp_path, *sample(seed=2))
    second = read_index(tmp_path).directory
    write_index(tmp_path, *sample(seed=3))
    third = read_index(tmp_path).directory
    assert not first.exists() and second.exists() and third.exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_failed_write_leaves_previous_index_current(tmp_path):
    manifest, content = sample()
    write_index(tmp_path, manifest, content)
    with pytest.raises(ValueError):
        write_index(tmp_path, *sample(vectors=content.vectors[:2]))
    assert read_index(tmp_path).passages == content.passages
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            write_index(tmp_path / "x", *sample())
    finally:
        tmp_path.chmod(0o700)


def test_unwritable_directory_because_a_file_is_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot write"):
        write_index(blocker / "index", *sample())


def test_writer_lock_is_exclusive_and_released(tmp_path):
    from qa.store import IndexBusy

    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()

    def hold():
        with writer_lock(tmp_path):
            ready.set()
            done.wait(10)

    proc = ctx.Process(target=hold)
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(IndexBusy, match="another qa process"):
            with writer_lock(tmp_path, timeout=0.2):
                pass
    finally:
        done.set()
        proc.join(10)
    with writer_lock(tmp_path, timeout=1):
        pass


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()

    def hold():
        with writer_lock(tmp_path):
            ready.set()
            while True:
                pass

    proc = ctx.Process(target=hold)
    proc.start()
    assert ready.wait(10)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    with writer_lock(tmp_path, timeout=2):
        pass


# --------------------------------------------------------------------------- damaged CURRENT or manifest


def _flip(path, at=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def _point_current_at(index_dir, gen):
    import hashlib

    sha = hashlib.sha256((gen / MANIFEST).read_bytes()).hexdigest()
    (index_dir / CURRENT).write_text(f"{gen.name} {sha}\n")


def test_missing_current_beside_generations_is_damaged_not_missing(tmp_path):
    write_index(tmp_path, *sample())
    (tmp_path / CURRENT).unlink()
    with pytest.raises(IndexCorrupt, match="damaged: CURRENT is missing"):
        read_index(tmp_path)


def test_a_regular_file_as_the_index_directory_is_not_a_directory(tmp_path):
    from qa.store import ensure_writable

    afile = tmp_path / "afile"
    afile.write_text("x")
    for call in (read_index, ensure_writable):
        with pytest.raises(StoreError) as info:
            call(afile)
        assert str(info.value) == f"{afile} is not a directory"
        assert not isinstance(info.value, (IndexCorrupt, IndexMissing))
    with pytest.raises(StoreError, match=f"cannot read the index directory .*: {re.escape(str(afile))} is not a directory"):
        read_index(afile / "index")


def test_each_generation_records_its_manifest_checksum(tmp_path):
    import hashlib

    from qa.store import MANIFEST_SHA

    write_index(tmp_path, *sample())
    gen = read_index(tmp_path).directory
    expected = hashlib.sha256((gen / MANIFEST).read_bytes()).hexdigest()
    assert (gen / MANIFEST_SHA).read_text().split() == [expected]
    assert (tmp_path / CURRENT).read_text().split()[1] == expected


def test_newest_intact_generation_skips_damaged_manifests(tmp_path):
    from qa.store import newest_intact_generation

    write_index(tmp_path, *sample(seed=1))
    older = read_index(tmp_path).directory
    write_index(tmp_path, *sample(seed=2))
    newest = read_index(tmp_path).directory
    assert newest_intact_generation(tmp_path).generation == newest.name
    _flip(newest / MANIFEST)
    found = newest_intact_generation(tmp_path)
    assert found.generation == older.name and found.snapshot is not None
    assert found.snapshot.passages == sample(seed=1)[1].passages
    # Valid JSON, wrong content: only the checksum recorded beside it tells.
    (older / MANIFEST).write_bytes((older / MANIFEST).read_bytes().replace(b"/docs/a.txt", b"/docs/b.txt"))
    assert newest_intact_generation(tmp_path) is None


def test_newest_intact_generation_keeps_the_manifest_of_damaged_data(tmp_path):
    from qa.store import newest_intact_generation

    write_index(tmp_path, *sample(seed=1))
    older = read_index(tmp_path).directory
    write_index(tmp_path, *sample(seed=2))
    _flip(read_index(tmp_path).directory / MANIFEST)
    _flip(older / VECTORS)
    found = newest_intact_generation(tmp_path)
    assert found.generation == older.name and found.snapshot is None
    assert found.manifest.documents == Manifest.from_json({"files": {}, **sample()[0]}).documents


def test_leftovers_are_not_pruned_while_the_current_manifest_is_damaged(tmp_path):
    import shutil

    from qa.store import remove_leftovers

    write_index(tmp_path, *sample(seed=1))
    first = read_index(tmp_path).directory
    write_index(tmp_path, *sample(seed=2))
    current = read_index(tmp_path).directory
    leftover = tmp_path / "gen-1-1"  # an older generation a killed write left behind
    shutil.copytree(first, leftover)
    _flip(first / MANIFEST)
    _flip(current / MANIFEST)  # the leftover is the only intact generation
    (tmp_path / ".tmp-gen-2-2").mkdir()
    remove_leftovers(tmp_path)
    assert leftover.exists() and first.exists() and current.exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_write_keeps_an_intact_previous_generation_rather_than_a_newer_damaged_one(tmp_path):
    write_index(tmp_path, *sample(seed=1))
    intact = read_index(tmp_path).directory
    write_index(tmp_path, *sample(seed=2))
    damaged = read_index(tmp_path).directory
    _flip(damaged / MANIFEST)
    _point_current_at(tmp_path, intact)  # what a recovery does
    write_index(tmp_path, *sample(seed=3))
    assert intact.exists() and not damaged.exists()


def test_a_snapshot_whose_generation_was_deleted_after_reading_still_searches(tmp_path):
    """Two later writes delete the generation a reader holds; its FAISS index is read
    lazily, and must then come from the vectors verified when the snapshot was read."""
    manifest, content = sample(20)
    write_index(tmp_path, manifest, content)
    snap = read_index(tmp_path)
    write_index(tmp_path, *sample(20, seed=3))
    write_index(tmp_path, *sample(20, seed=4))
    assert not snap.directory.exists()
    assert np.array_equal(snap.vector_store.faiss_index.reconstruct_n(0, 20), content.vectors)
    queries = unit_rows(3, seed=9)
    scores, ids = snap.search(queries, 3)
    assert (ids == np.argsort(-(queries @ content.vectors.T), axis=1)[:, :3]).all()


def test_a_vectors_file_changed_after_reading_is_still_damage(tmp_path):
    write_index(tmp_path, *sample(20))
    snap = read_index(tmp_path)
    (snap.directory / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt):
        snap.vector_store.faiss_index
