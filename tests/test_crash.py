"""Crash, concurrency and hostile-file safety of the index on disk.

Fast (the fake model, small corpora). The long versions are bench/crash_kills.py
(hundreds of SIGKILLs of ``qa index`` and of the model build) and
bench/fuzz_hostile.py; docs/RELIABILITY.md has the figures. tests/test_store.py
covers the basic checksum cases (bit flip, truncation of vectors, passages,
background and manifest; a vectors file from another index; a bad CURRENT).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FAKE_MODEL, FakeEmbedder
from qa.cli import REFUSED_EXIT
from qa.indexer import build_index, update_index
from qa.paths import BUNDLED_ARTICLE
from qa.store import (
    CURRENT,
    DATA_FILES,
    FORMAT_VERSION,
    MANIFEST,
    IndexCorrupt,
    read_index,
    writer_lock,
)

TESTS = Path(__file__).resolve().parent
FAKE_QA = TESTS / "fake_qa.py"


# --------------------------------------------------------------------------- helpers


def qa_cmd(*args: str) -> list[str]:
    return [sys.executable, str(FAKE_QA), *args]


def qa_env() -> dict[str, str]:
    """The environment of qa subprocesses: the shared model cache, no default model."""
    env = {**os.environ, "QA_CACHE_DIR": str(TESTS.parent / ".cache")}
    env.pop("QA_MODEL", None)
    return env


def run_qa(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(qa_cmd(*args), capture_output=True, text=True, timeout=timeout, env=qa_env())


def start_qa(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(qa_cmd(*args), env=qa_env(), **kwargs)


def digest(index_dir: Path) -> str:
    """Load (and so verify) the index; digest its passages and every vector it holds."""
    snap = read_index(index_dir)
    h = hashlib.sha256()
    for p in snap.passages:
        h.update(json.dumps([p.text, p.source, p.start, p.end, p.title]).encode())
    h.update(snap.vector_store.faiss_index.reconstruct_n(0, snap.vector_store.faiss_index.ntotal).tobytes())
    content = getattr(snap, "content", snap)
    for name in ("sentence_vectors", "background"):
        value = getattr(content, name, None)
        if value is not None:
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, list[Path]]:
    """Two small corpora that give different indexes."""
    tmp_path = tmp_path_factory.mktemp("corpora")
    a = tmp_path / "corpus-a" / "article.txt"
    a.parent.mkdir()
    a.write_bytes(BUNDLED_ARTICLE.read_bytes())
    lines = (TESTS.parent / "qa" / "data" / "background_en.txt").read_text(encoding="utf-8").splitlines()
    b = tmp_path / "corpus-b" / "notes.txt"
    b.parent.mkdir()
    b.write_text("Notes on unrelated topics\n\n" + "\n\n".join(lines[:40]) + "\n", encoding="utf-8")
    return {"a": [a], "b": [b]}


@pytest.fixture(scope="module")
def references(tmp_path_factory, corpora) -> dict[str, str]:
    """The digest of a complete index of each corpus, built on its own."""
    tmp_path = tmp_path_factory.mktemp("references")
    out = {}
    for name, paths in corpora.items():
        ref = tmp_path / f"ref-{name}"
        done = run_qa("index", "--replace", *map(str, paths), "--index-dir", str(ref), "--model", FAKE_MODEL)
        assert done.returncode == 0, done.stderr
        out[name] = digest(ref)
    assert out["a"] != out["b"]
    return out


def assert_clean(index_dir: Path) -> None:
    assert not list(index_dir.glob(".tmp-*"))
    assert len(list(index_dir.glob("gen-*"))) <= 2


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_index_runs_at_once_are_serialized_and_never_mix(tmp_path, corpora, references):
    index_dir = tmp_path / "shared"
    for _ in range(2):
        procs = [
            start_qa(
                "index", "--replace", *map(str, corpora[name]), "--index-dir", str(index_dir), "--model", FAKE_MODEL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for name in ("a", "b")
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        assert digest(index_dir) in set(references.values())
        assert_clean(index_dir)


@pytest.mark.slow
def test_index_waits_for_the_writer_lock(tmp_path, corpora, references):
    index_dir = tmp_path / "locked"
    with writer_lock(index_dir):
        proc = start_qa(
            "index", "--replace", *map(str, corpora["a"]), "--index-dir", str(index_dir), "--model", FAKE_MODEL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(2.5)  # a whole fake build takes about a second
        assert proc.poll() is None, "qa index did not wait for the writer lock"
        assert not (index_dir / CURRENT).exists()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert digest(index_dir) == references["a"]


WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
from qa.indexer import build_index
index_dir, stop = Path(sys.argv[1]), Path(sys.argv[2])
corpora = [[Path(p)] for p in sys.argv[3:]]
writes = 0
while not stop.exists():
    build_index(index_dir, corpora[writes % len(corpora)], FakeEmbedder())
    writes += 1
print(writes)
"""


@pytest.mark.slow
def test_reads_during_repeated_rewrites_always_see_one_complete_index(tmp_path, corpora, references):
    index_dir, stop = tmp_path / "busy", tmp_path / "stop"
    done = run_qa("index", "--replace", *map(str, corpora["a"]), "--index-dir", str(index_dir), "--model", FAKE_MODEL)
    assert done.returncode == 0, done.stderr
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=str(TESTS)), str(index_dir), str(stop),
         str(corpora["a"][0]), str(corpora["b"][0])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=qa_env(),
    )
    askers = []
    try:
        seen, reads = set(), 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            if len(askers) < 4 and reads % 25 == 0:
                askers.append(start_qa(
                    "ask", "Which drones did Russia import?", "--json", "--index-dir", str(index_dir),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                ))
            d = digest(index_dir)  # raises if any read is not a complete, verified index
            assert d in references.values()
            seen.add(d)
            reads += 1
        for asker in askers:
            out, err = asker.communicate(timeout=60)
            answer = json.loads(out)
            assert asker.returncode == (0 if answer["found"] else REFUSED_EXIT), err  # corpus b can't answer: 3
            assert answer["passages"], out
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert int(out) >= 2, "the writer was too slow for the test to mean anything"
    assert seen == set(references.values()) and reads >= 20
    assert_clean(index_dir)


HOLDER = """
import sys, time
from pathlib import Path
from qa.store import writer_lock
index_dir = Path(sys.argv[1])
with writer_lock(index_dir):
    tmp = index_dir / ".tmp-gen-1-1"          # a half-written generation
    tmp.mkdir()
    (tmp / "vectors.faiss").write_bytes(b"IxF")
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_lock_and_leftovers_of_a_killed_writer_do_not_block_the_next_index(tmp_path, corpora, references):
    index_dir = tmp_path / "crashed"
    done = run_qa("index", "--replace", *map(str, corpora["a"]), "--index-dir", str(index_dir), "--model", FAKE_MODEL)
    assert done.returncode == 0, done.stderr
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(index_dir)], stdout=subprocess.PIPE, text=True, env=qa_env())
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert digest(index_dir) == references["a"]  # the dead writer changed nothing
    done = run_qa("index", "--replace", *map(str, corpora["b"]), "--index-dir", str(index_dir), "--model", FAKE_MODEL, timeout=30)
    assert done.returncode == 0, done.stderr
    assert digest(index_dir) == references["b"]
    assert_clean(index_dir)


@pytest.mark.slow
def test_index_killed_at_random_moments_is_old_or_new(tmp_path, corpora, references):
    """A few SIGKILLs for CI; bench/crash_kills.py does hundreds, aimed at write_index too."""
    index_dir = tmp_path / "killed"
    cmd = {n: qa_cmd("index", "--replace", *map(str, p), "--index-dir", str(index_dir), "--model", FAKE_MODEL) for n, p in corpora.items()}
    started = time.perf_counter()
    assert subprocess.run(cmd["a"], capture_output=True, env=qa_env()).returncode == 0
    full = time.perf_counter() - started
    rng, current = random.Random(1234), "a"
    for _ in range(4):
        other = "b" if current == "a" else "a"
        proc = subprocess.Popen(cmd[other], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=qa_env())
        time.sleep(rng.uniform(0.3, 1.1) * full)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        d = digest(index_dir)
        assert d in (references[current], references[other])
        current = "a" if d == references["a"] else "b"
    assert subprocess.run(cmd["a"], capture_output=True, env=qa_env()).returncode == 0
    assert digest(index_dir) == references["a"]
    assert_clean(index_dir)


@pytest.mark.slow
def test_first_index_killed_before_current_was_written_is_recovered_not_replaced(tmp_path, corpora, references,
                                                                                monkeypatch):
    """A first build killed after its generation was renamed into place but before
    CURRENT was written leaves a complete generation and no CURRENT: the next run
    makes that generation current (it is what was asked for), and never indexes the
    bundled article in its place."""
    index_dir = tmp_path / "first"
    real_replace = os.replace

    def killed_before_current(src, dst, *args, **kwargs):
        if Path(dst).name == CURRENT:
            raise KeyboardInterrupt
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed_before_current)
    with pytest.raises(KeyboardInterrupt):
        build_index(index_dir, corpora["b"], FakeEmbedder())
    monkeypatch.undo()
    assert not (index_dir / CURRENT).exists() and len(list(index_dir.glob("gen-*"))) == 1
    done = run_qa("index", "--index-dir", str(index_dir))
    assert done.returncode == 0, done.stderr
    assert "CURRENT is missing" in done.stderr and "bundled" not in done.stderr
    assert digest(index_dir) == references["b"]
    assert_clean(index_dir)


# --------------------------------------------------------------------------- hostile files


@pytest.fixture
def built(tmp_path) -> Path:
    index_dir = tmp_path / "index"
    build_index(index_dir, [BUNDLED_ARTICLE], FakeEmbedder())
    return index_dir


def forge(index_dir: Path, name: str, data: bytes | None = None, manifest: object = None) -> None:
    """Replace a file of the current generation and fix up every checksum, as an
    attacker with write access to the index would; only parsing stands in the way."""
    gen = read_index(index_dir).directory
    if manifest is None:
        manifest = json.loads((gen / MANIFEST).read_bytes())
        (gen / name).write_bytes(data)
        manifest["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()
        manifest["files"][name]["bytes"] = len(data)  # the recorded size too, checked before hashing
    manifest_bytes = json.dumps(manifest).encode()
    (gen / MANIFEST).write_bytes(manifest_bytes)
    (index_dir / CURRENT).write_text(f"{gen.name} {hashlib.sha256(manifest_bytes).hexdigest()}\n")
    # Signed too, as by someone holding the user's key: the worst case for parsing. (Without
    # the key an index is never refreshed at all: tests/test_forged_index.py.)
    from qa.signing import sign
    from qa.store import MANIFEST_SIG

    (gen / MANIFEST_SIG).write_text(sign(manifest_bytes) + "\n")


class Payload:
    """Unpickling this creates a file: proof that loading executed code."""

    marker: str = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def assert_one_line_corrupt(index_dir: Path, fragment: str = "damaged") -> None:
    with pytest.raises(IndexCorrupt) as info:
        read_index(index_dir)
    message = str(info.value)
    assert "\n" not in message and fragment in message, message


@pytest.mark.parametrize("name", ["background.npy", "sentences.npy", "lexicon.npz"])
def test_pickled_arrays_are_refused_not_executed(built, tmp_path, name, fake_model):
    marker = tmp_path / "pwned"
    Payload.marker = str(marker)
    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    path = tmp_path / "evil"
    with open(path, "wb") as handle:
        if name.endswith(".npz"):
            np.savez(handle, words=evil)
        else:
            np.save(handle, evil, allow_pickle=True)
    forge(built, name, path.read_bytes())
    assert_one_line_corrupt(built)
    # and through the CLI: a one-line error, no traceback, nothing executed
    from typer.testing import CliRunner

    from qa.cli import app

    result = CliRunner().invoke(app, ["ask", "drone", "--index-dir", str(built)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and "damaged" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        "manifest",
        None,
        {"files": []},
        {"format_version": FORMAT_VERSION, "files": {"vectors.faiss": "x"}},
        {"format_version": FORMAT_VERSION, "files": {name: {"sha256": 7} for name in DATA_FILES}},
    ],
    ids=["list", "string", "null", "files-list", "files-entry-string", "sha-number"],
)
def test_forged_manifest_is_a_one_line_error(built, manifest):
    if manifest is None:
        gen = read_index(built).directory
        data = b"null"
        (gen / MANIFEST).write_bytes(data)
        (built / CURRENT).write_text(f"{gen.name} {hashlib.sha256(data).hexdigest()}\n")
    else:
        forge(built, MANIFEST, manifest=manifest)
    assert_one_line_corrupt(built)


def test_forged_manifest_with_bad_documents_is_a_one_line_error(built):
    manifest = json.loads((read_index(built).directory / MANIFEST).read_bytes())
    manifest["documents"] = "not a list"
    forge(built, MANIFEST, manifest=manifest)
    assert_one_line_corrupt(built)


def test_a_forged_skipped_record_is_ignored_not_a_traceback(built):
    manifest = json.loads((read_index(built).directory / MANIFEST).read_bytes())
    manifest["skipped"] = [[["x"]], "y", [1, 2], ["a", "b", "c"], {"p": "r"}]
    forge(built, MANIFEST, manifest=manifest)
    report = update_index(built, [], embedder=FakeEmbedder())
    assert report.skipped_before == set()


@pytest.mark.parametrize("name", [*DATA_FILES, MANIFEST])
@pytest.mark.parametrize("damage", ["empty", "deleted"])
def test_emptied_or_deleted_file_is_detected(built, name, damage):
    path = read_index(built).directory / name
    if damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    assert_one_line_corrupt(built)


@pytest.mark.parametrize("name", DATA_FILES)
def test_file_from_the_previous_generation_is_detected(tmp_path, name):
    index_dir = tmp_path / "index"
    build_index(index_dir, [BUNDLED_ARTICLE], FakeEmbedder())
    old = read_index(index_dir).directory
    other = tmp_path / "other.txt"
    other.write_text("Another title\n\nA different document. With other passages.\n", encoding="utf-8")
    build_index(index_dir, [other], FakeEmbedder())
    new = read_index(index_dir).directory
    assert old.exists() and old != new  # the previous generation is kept for readers
    (new / name).write_bytes((old / name).read_bytes())
    assert_one_line_corrupt(index_dir, name)


def test_current_pointing_at_another_generation_with_a_stale_checksum_is_detected(tmp_path):
    index_dir = tmp_path / "index"
    build_index(index_dir, [BUNDLED_ARTICLE], FakeEmbedder())
    old = read_index(index_dir).directory
    build_index(index_dir, [BUNDLED_ARTICLE], FakeEmbedder(salt="x"))
    sha = (index_dir / CURRENT).read_text().split()[1]
    (index_dir / CURRENT).write_text(f"{old.name} {sha}\n")
    assert_one_line_corrupt(index_dir, MANIFEST)


@pytest.mark.slow
@pytest.mark.parametrize("name", DATA_FILES)
def test_random_damage_with_forged_checksums_never_escapes_as_another_error(built, name):
    """Only the parsers stand between forged bytes and qa: they must say "damaged"
    (or load something self-consistent), never raise anything else or crash."""
    gen = read_index(built).directory
    original = (gen / name).read_bytes()
    manifest = json.loads((gen / MANIFEST).read_bytes())
    rng = random.Random(name)
    outcomes = {"loaded": 0, "corrupt": 0}
    for _ in range(25):
        data = bytearray(original)
        kind = rng.choice(["flip", "truncate", "int", "garbage"])
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            data = data[: rng.randrange(len(data))]
        elif kind == "int":
            pos = rng.randrange(max(1, min(len(data) - 8, 200)))
            data[pos : pos + 8] = rng.choice([2**31 - 1, 2**40, 2**63 - 1, 0]).to_bytes(8, "little")
        else:
            pos = rng.randrange(len(data))
            data[pos : pos + 16] = bytes(rng.randrange(256) for _ in range(16))
        (gen / name).write_bytes(bytes(data))
        forged = {**manifest, "files": {**manifest["files"], name: {"sha256": hashlib.sha256(bytes(data)).hexdigest()}}}
        manifest_bytes = json.dumps(forged).encode()
        (gen / MANIFEST).write_bytes(manifest_bytes)
        (built / CURRENT).write_text(f"{gen.name} {hashlib.sha256(manifest_bytes).hexdigest()}\n")
        try:
            read_index(built)
            outcomes["loaded"] += 1
        except IndexCorrupt as exc:
            assert "\n" not in str(exc)
            outcomes["corrupt"] += 1
    assert sum(outcomes.values()) == 25


def test_loaders_never_allow_pickles():
    """Every np.load in qa passes allow_pickle=False; nothing uses pickle or torch.load."""
    root = TESTS.parent / "qa"
    for path in root.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for forbidden in ("import pickle", "torch.load(", "allow_pickle=True", "joblib", "marshal.load"):
            assert forbidden not in source, f"{path}: {forbidden}"
        for line in source.splitlines():
            if "np.load(" in line or "numpy.load(" in line:
                assert "allow_pickle=False" in line, f"{path}: {line.strip()}"


# --------------------------------------------------------------------------- races, made deterministic


def test_generation_removed_while_being_read_is_retried_on_the_new_one(tmp_path, monkeypatch):
    """A reader opens the current generation; two writes finish before it reads the
    vectors, so that generation is deleted under it. It must retry on the new
    CURRENT, not call the index damaged."""
    index_dir = tmp_path / "index"
    other = tmp_path / "other.txt"
    other.write_text("Another title\n\nA different document. With other passages.\n", encoding="utf-8")
    build_index(index_dir, [BUNDLED_ARTICLE], FakeEmbedder())
    real_load = np.load
    calls = []

    def load_after_two_writes(path, *args, **kwargs):
        if not calls:
            calls.append(path)
            build_index(index_dir, [other], FakeEmbedder())
            build_index(index_dir, [BUNDLED_ARTICLE], FakeEmbedder(salt="x"))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", load_after_two_writes)
    snap = read_index(index_dir)
    assert calls and not Path(calls[0]).exists()  # the generation it started on is gone
    assert snap.directory == index_dir / (index_dir / CURRENT).read_text().split()[0]


def test_probe_removed_by_a_concurrent_writers_cleanup_is_not_an_error(tmp_path, monkeypatch):
    """ensure_writable's probe file is a .tmp-* name, which a concurrent writer's clean-up
    deletes; that must not make `qa index` report an unwritable directory."""
    from qa.store import ensure_writable

    index_dir = tmp_path / "index"
    index_dir.mkdir()
    real_write_bytes = Path.write_bytes

    def write_then_cleanup(self, data):
        written = real_write_bytes(self, data)
        if self.name.startswith(".tmp-probe-"):
            self.unlink()  # what _remove_old_generations of another process does
        return written

    monkeypatch.setattr(Path, "write_bytes", write_then_cleanup)
    ensure_writable(index_dir)


@pytest.mark.slow
def test_index_killed_mid_embedding_resumes_where_it_stopped(tmp_path):
    """kill -9 during embedding: the old index stands, and the rerun embeds only the rest."""
    index_dir = tmp_path / "resume"
    first = tmp_path / "first.txt"
    first.write_text("A small first document.\n", encoding="utf-8")
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join(f"Paragraph {i} tells fact {i * 13} about item {i % 17}." for i in range(600)), encoding="utf-8")
    slow = [sys.executable, str(TESTS.parent / "bench" / "slow_fake_qa.py"), "index", "--index-dir", str(index_dir),
            "--model", "fake-slow"]
    env = {**qa_env(), "QA_FAKE_SLEEP": "0.15"}
    assert subprocess.run([*slow, str(first)], capture_output=True, env=env, timeout=60).returncode == 0
    before = digest(index_dir)
    proc = subprocess.Popen([*slow, str(big)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while not list(index_dir.glob(".journal-*/batch-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert list(index_dir.glob(".journal-*/batch-*.npz")), "no batch was journalled before the kill"
    assert digest(index_dir) == before
    done = subprocess.run([*slow, str(big)], capture_output=True, text=True, env={**env, "QA_FAKE_SLEEP": "0"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "from an interrupted run" in done.stdout
    assert len(read_index(index_dir).passages) == 601
    assert not list(index_dir.glob(".journal-*"))


def test_faiss_file_is_read_on_first_use_and_checked_again_then(built):
    """A small index never needs its FAISS file; when it is read later, a forged or
    vanished file is still a one-line IndexCorrupt, never FAISS's own error."""
    forge(built, "vectors.faiss", b"IxFI" + bytes(200))
    snap = read_index(built)  # exact scoring needs only vectors.npy
    with pytest.raises(IndexCorrupt, match="damaged") as info:
        snap.vector_store.faiss_index
    assert "\n" not in str(info.value)
    snap = read_index(built)
    (snap.directory / "vectors.faiss").write_bytes(b"changed after the read")
    with pytest.raises(IndexCorrupt, match="does not match its checksum"):
        snap.vector_store.faiss_index


def _with(manifest: dict, path: str, value) -> dict:
    """A copy of ``manifest`` with the key at ``path`` ("documents.0.source") set to ``value``."""
    copy = json.loads(json.dumps(manifest))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return copy


FORGED_TYPES = {
    "source-number": ("documents.0.source", 5), "source-empty": ("documents.0.source", ""),
    "roots-null": ("roots", None), "roots-numbers": ("roots", [1, 2]), "excluded-string": ("excluded", "x"),
    "model-string": ("model", "string"), "probe-string": ("model.probe", "abc"),
    "probe-strings": ("model.probe", ["a"]), "max-tokens-string": ("model.max_tokens", "x"),
    "model-name-number": ("model.name", 3), "documents-numbers": ("documents", [5]),
    "size-string": ("documents.0.size", "big"), "mtime-float-string": ("documents.0.mtime_ns", "1"),
    "passages-negative": ("documents.0.passages", -1), "passages-wrong-sum": ("documents.0.passages", 99),
    "title-number": ("documents.0.title", 5), "bundled-string": ("documents.0.bundled", "yes"),
    "sha-number": ("documents.0.sha256", 7), "passed-over-strings": ("passed_over", ["x"]),
    "background-number": ("background", 5), "chunking-list": ("chunking", []), "terms-string": ("terms", "x"),
    "dim-negative": ("dim", -1), "vectors-string": ("vectors", "faiss"), "n-passages-bool": ("n_passages", True),
}


@pytest.mark.parametrize("path, value", list(FORGED_TYPES.values()), ids=list(FORGED_TYPES))
def test_a_manifest_of_valid_checksums_and_wrong_types_is_damaged_never_a_traceback(built, path, value, fake_model):
    from typer.testing import CliRunner

    from qa.cli import app

    manifest = json.loads((read_index(built).directory / MANIFEST).read_bytes())
    forge(built, MANIFEST, manifest=_with(manifest, path, value))
    assert_one_line_corrupt(built)
    runner = CliRunner()
    for command in (["sources"], ["ask", "drone"], ["index", "--model", FAKE_MODEL]):
        result = runner.invoke(app, [*command, "--index-dir", str(built)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.exception)
        assert "Traceback" not in result.output
        if result.exit_code != 0:
            assert len(result.stderr.strip().splitlines()) == 1, (command, result.stderr)
