"""Crash safety: SIGKILL ``qa index`` and the default-model build at random moments.

    .venv/bin/python bench/crash_kills.py [--kills N] [--model-kills M] [--seed S]

Index kills. Two corpora of text files are assembled from qa/data/background_*.txt
(v1 ~310 passages, v2 ~380). ``qa index`` runs as a subprocess with the slow fake model
of bench/slow_fake_qa.py (deterministic hashed bag-of-words vectors, a sleep per batch,
so that a run lasts ~2-3 s; everything from the writer lock on is qa's real code).
Each round starts from a complete index of one corpus (A), starts ``qa index`` of the
other (B) and SIGKILLs it, alternately

* at a moment uniform over the whole run (start of the process to its exit), and
* at a moment uniform over the window in which ``write_index`` runs (from its
  ``.tmp-gen-*`` directory appearing to the process's exit, with 20% margin),
  because that window is milliseconds of a run and is where a torn index could be.

Then ``qa.store.read_index`` must load the index, and a digest of its passages,
passage vectors, sentence vectors and background must equal A's or B's (never a
mix). After every kill inside ``write_index`` (the only stretch in which the writer
lock is held) and every kill that left ``.tmp-*`` behind, a following ``qa index`` (of a
random corpus) must succeed, not be blocked by the dead writer's lock, and leave no
``.tmp-*`` and at most two generations; other rounds go on from the state left.

Model kills. ``qa.models.e5_q4.ensure_default_model(cache)`` runs in a subprocess
building into a temporary cache and is SIGKILLed at a moment uniform over a build
(+10%; the median of the complete builds seen so far); then the model folder must be either absent or complete with every checksum
right (``is_complete_build(folder, verify_checksums=True)``), and the next call (run
to completion) must return a folder that verifies and leave no temporary folders.

Race. For ``--race-seconds`` (default 20), the main process loads and verifies the
index in a loop while one process rewrites it as fast as it can (``build_index`` of
two tiny documents in turn, the fake model) and another calls ``ensure_writable``
(what ``qa index`` does before it takes the lock): every read must verify and be one
of the two indexes, and no probe may fail.

Prints ``N kills, N consistent`` and how many landed on the old or new index; exits 1
on any inconsistency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from qa.store import read_index  # noqa: E402

PY = sys.executable
RUNNER = REPO / "bench" / "slow_fake_qa.py"
MODEL = "fake-slow"


# --------------------------------------------------------------------------- corpora


def make_corpus(folder: Path, seed: int, copies: float) -> list[Path]:
    """Write 4 text files of shuffled background lines, 1-3 lines a paragraph."""
    lines = [
        line.strip()
        for name in ("background_id.txt", "background_en.txt")
        for line in (REPO / "qa" / "data" / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    rng = random.Random(seed)
    pool = []
    while len(pool) < copies * len(lines):
        batch = lines[:]
        rng.shuffle(batch)
        pool.extend(batch)
    pool = pool[: int(copies * len(lines))]
    folder.mkdir(parents=True)
    paths = []
    for k in range(4):
        chunk, paragraphs, i = pool[k::4], [], 0
        while i < len(chunk):
            n = rng.randint(1, 3)
            paragraphs.append(" ".join(chunk[i : i + n]))
            i += n
        path = folder / f"doc{k}.txt"
        path.write_text(f"Dokumen {seed}-{k}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- index


def digest(index_dir: Path) -> tuple[str, int]:
    """Load the index (verifying every checksum) and digest what it answers from."""
    snap = read_index(index_dir)
    h = hashlib.sha256()
    for p in snap.passages:
        h.update(json.dumps([p.text, p.source, p.start, p.end, p.title]).encode())
    n = snap.index.ntotal
    h.update(snap.index.reconstruct_n(0, n).tobytes() if n else b"")
    content = getattr(snap, "content", snap)
    for name in ("sentence_spans", "sentence_vectors", "background"):
        value = getattr(content, name, None)
        if isinstance(value, np.ndarray):
            h.update(np.ascontiguousarray(value).tobytes())
        elif value is not None:
            h.update(json.dumps(value).encode())
    return h.hexdigest(), len(snap.passages)


def index_cmd(paths: list[Path], index_dir: Path) -> list[str]:
    return [PY, str(RUNNER), "index", "--replace", *map(str, paths), "--index-dir", str(index_dir), "--model", MODEL]


def run_index(paths, index_dir, env) -> float:
    started = time.perf_counter()
    done = subprocess.run(index_cmd(paths, index_dir), env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"qa index failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def wait_for_tmp(index_dir: Path, proc: subprocess.Popen) -> float | None:
    """Spin until write_index's .tmp-gen-* directory appears; None if the process ended first."""
    while proc.poll() is None:
        try:
            if any(name.startswith(".tmp-gen-") for name in os.listdir(index_dir)):
                return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(0.0002)
    return None


def watch_write(index_dir: Path, proc: subprocess.Popen) -> float | None:
    """Spin from write_index's start until CURRENT changed and no .tmp-* is left; its duration."""
    try:
        before = (index_dir / "CURRENT").read_bytes()
    except FileNotFoundError:
        before = b""
    seen = wait_for_tmp(index_dir, proc)
    if seen is None:
        return None
    while proc.poll() is None:
        try:
            names = os.listdir(index_dir)
            if not any(n.startswith(".tmp-") for n in names) and (index_dir / "CURRENT").read_bytes() != before:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0002)
    return time.perf_counter() - seen


def calibrate(corpora, index_dir, env) -> tuple[dict, float, float]:
    """Time full runs and write windows; return expected digests by corpus name."""
    digests, totals, windows = {}, [], []
    for _ in range(2):
        for name, paths in corpora.items():
            started = time.perf_counter()
            proc = subprocess.Popen(index_cmd(paths, index_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            window = watch_write(index_dir, proc)
            _, err = proc.communicate(timeout=120)
            totals.append(time.perf_counter() - started)
            if proc.returncode != 0:
                raise RuntimeError(f"calibration run failed: {err.decode()[-500:]}")
            if window is not None:
                windows.append(window)
            d = digest(index_dir)
            if digests.setdefault(name, d) != d:
                raise RuntimeError("two complete builds of the same corpus differ: the digest is not deterministic")
    return digests, sum(totals) / len(totals), max(windows) if windows else 0.05


def index_kills(kills: int, rng: random.Random, work: Path) -> bool:
    env = {**os.environ, "QA_CACHE_DIR": str(work / "cache"), "QA_FAKE_SLEEP": "0.01"}
    env.pop("QA_MODEL", None)
    corpora = {"v1": make_corpus(work / "v1", 1, 1.0), "v2": make_corpus(work / "v2", 2, 1.2)}
    index_dir = work / "index"
    digests, total, window = calibrate(corpora, index_dir, env)
    by_digest = {d: name for name, d in digests.items()}
    print(
        f"index kills: model {MODEL} (bench/slow_fake_qa.py: fake 384-d vectors, 10 ms sleep per batch of 32); "
        f"corpus v1 {digests['v1'][1]} passages, v2 {digests['v2'][1]} passages; "
        f"a full `qa index` run takes {total:.2f} s, of which write_index (temporary directory to CURRENT swapped and clean) ~{window * 1000:.0f} ms",
        flush=True,
    )
    current = "v2"  # calibration ended with v2
    consistent = old = new = 0
    modes = {"uniform": 0, "write": 0}
    recovered = cleaned = checked = 0
    leftovers_seen = 0
    failures = []
    for i in range(kills):
        target = "v1" if current == "v2" else "v2"
        mode = "uniform" if i % 2 == 0 else "write"
        modes[mode] += 1
        started = time.perf_counter()
        proc = subprocess.Popen(index_cmd(corpora[target], index_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if mode == "uniform":
            delay = rng.uniform(0, total * 1.05)
            time.sleep(max(0.0, delay - (time.perf_counter() - started)))
        else:
            seen = wait_for_tmp(index_dir, proc)
            if seen is not None:
                time.sleep(rng.uniform(0, window * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if list(index_dir.glob(".tmp-*")):
            leftovers_seen += 1
        try:
            d = digest(index_dir)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            failures.append(f"kill {i} ({mode}): read_index failed: {type(exc).__name__}: {exc}")
            d = None
        landed = by_digest.get(d)
        if landed is None:
            if d is not None:
                failures.append(f"kill {i} ({mode}): the index is neither {current} nor {target} (a mix)")
        else:
            consistent += 1
            if landed == current:
                old += 1
            else:
                new += 1
        # The following `qa index` must succeed (not blocked by the dead writer's lock)
        # and clean up after the killed one. Checked after every kill inside
        # write_index (the only stretch where the lock is held) and every kill that
        # left .tmp-* behind; other rounds go on from the state the kill left.
        if mode == "uniform" and not list(index_dir.glob(".tmp-*")):
            if landed is not None:
                current = landed
            continue
        checked += 1
        follow = rng.choice(["v1", "v2"])
        try:
            run_index(corpora[follow], index_dir, env)
            recovered += 1
            gens = list(index_dir.glob("gen-*"))
            if not list(index_dir.glob(".tmp-*")) and len(gens) <= 2 and digest(index_dir)[0] == digests[follow][0]:
                cleaned += 1
            else:
                failures.append(f"kill {i}: after the next qa index: {sorted(p.name for p in index_dir.iterdir())}")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"kill {i}: the next qa index failed: {exc}")
        current = follow
    print(
        f"{kills} kills, {consistent} consistent (landed old: {old}, new: {new}); "
        f"{modes['uniform']} at a uniform moment of the run, {modes['write']} inside write_index; "
        f"{leftovers_seen} left .tmp-* behind; the next `qa index` (run after {checked} kills: every one "
        f"inside write_index or leaving .tmp-*) succeeded {recovered}/{checked} and left a clean directory {cleaned}/{checked}",
        flush=True,
    )
    for failure in failures:
        print("FAIL", failure)
    return not failures and consistent == kills and cleaned == checked


# --------------------------------------------------------------------------- model


MODEL_CALL = (
    "import sys; from pathlib import Path; "
    "from qa.models.e5_q4 import ensure_default_model; "
    "print(ensure_default_model(Path(sys.argv[1])))"
)


def model_kills(kills: int, rng: random.Random, work: Path) -> bool:
    from qa.models.e5_q4 import default_model_dir, is_complete_build

    cache = work / "model-cache"
    target = default_model_dir(cache)
    models = target.parent
    builds = []  # durations of complete builds (subprocess start to exit)
    for _ in range(2):
        shutil.rmtree(models, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run([PY, "-c", MODEL_CALL, str(cache)], check=True, capture_output=True, timeout=600)
        builds.append(time.perf_counter() - started)
    print(f"model kills: ensure_default_model into a temporary cache; a build takes {statistics.median(builds):.1f} s", flush=True)
    consistent = absent = complete = 0
    next_ok = clean = 0
    failures = []
    for i in range(kills):
        if target.exists():  # start every round without a build, as on a first run
            doomed = models / "doomed"
            os.rename(target, doomed)
            shutil.rmtree(doomed)
        proc = subprocess.Popen([PY, "-c", MODEL_CALL, str(cache)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, statistics.median(builds) * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The invariant that makes the next call right: the final name holds nothing
        # or a complete build (the cheap start-up check must agree with the full one).
        complete_before = False
        if not target.exists():
            absent += 1
            consistent += 1
        elif is_complete_build(target, verify_checksums=True) and is_complete_build(target):
            complete += 1
            consistent += 1
            complete_before = True
        else:
            failures.append(f"model kill {i}: {target} exists but is not a complete build")
        started = time.perf_counter()
        done = subprocess.run([PY, "-c", MODEL_CALL, str(cache)], capture_output=True, text=True, timeout=600)
        if not complete_before:
            builds.append(time.perf_counter() - started)  # it rebuilt: one more full-build timing
        returned = Path(done.stdout.strip()) if done.returncode == 0 else None
        if returned is not None and is_complete_build(returned, verify_checksums=True):
            next_ok += 1
        else:
            failures.append(f"model kill {i}: the next call failed or returned an incomplete folder: {done.stderr[-300:]}")
        stray = [p.name for p in models.iterdir() if p.name.startswith(".") and p.is_dir()]
        if not stray:
            clean += 1
        else:
            failures.append(f"model kill {i}: leftovers after the next call: {stray}")
    print(
        f"{kills} model kills, {consistent} consistent (no build yet: {absent}, complete build: {complete}); "
        f"next call returned a verified build {next_ok}/{kills}, left no temporary folders {clean}/{kills}",
        flush=True,
    )
    for failure in failures:
        print("FAIL", failure)
    return not failures


# --------------------------------------------------------------------------- race


def _race_writer(index_dir: Path, docs: list[Path], stop, counter) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import FakeEmbedder

    from qa.indexer import build_index

    while not stop.is_set():
        build_index(index_dir, [docs[counter.value % 2]], FakeEmbedder())
        with counter.get_lock():
            counter.value += 1


def _race_prober(index_dir: Path, stop, errors) -> None:
    from qa.store import StoreError, ensure_writable

    while not stop.is_set():
        try:
            ensure_writable(index_dir)  # what `qa index` does before taking the lock
        except StoreError:
            with errors.get_lock():
                errors.value += 1


def race(seconds: float, work: Path) -> bool:
    """Readers, a writer rewriting as fast as it can, and `qa index`'s writability probe."""
    import multiprocessing

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import FakeEmbedder

    from qa.indexer import build_index

    index_dir, docs = work / "race", []
    for k in range(2):
        doc = work / f"race{k}.txt"
        doc.write_text(f"Judul {k}\n\nKalimat pertama {k}. Kalimat kedua tentang roket.\n", encoding="utf-8")
        docs.append(doc)
    expected = set()
    for doc in docs:
        build_index(index_dir, [doc], FakeEmbedder())
        expected.add(digest(index_dir)[0])
    ctx = multiprocessing.get_context("fork")
    stop, writes, probe_errors = ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=_race_writer, args=(index_dir, docs, stop, writes)),
        ctx.Process(target=_race_prober, args=(index_dir, stop, probe_errors)),
    ]
    for proc in procs:
        proc.start()
    reads, failures = 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if digest(index_dir)[0] not in expected:
                failures.append("a read saw neither index")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{type(exc).__name__}: {exc}")
        reads += 1
    stop.set()
    for proc in procs:
        proc.join(60)
    print(
        f"race for {seconds:.0f} s: {reads} verified reads during {writes.value} rewrites, "
        f"{len(failures)} failed reads; writability probes failed {probe_errors.value} times",
        flush=True,
    )
    for failure in sorted(set(failures))[:10]:
        print("FAIL", failure)
    return not failures and probe_errors.value == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="qa index kills (default 100)")
    parser.add_argument("--model-kills", type=int, default=20, help="ensure_default_model kills (default 20)")
    parser.add_argument("--race-seconds", type=float, default=20, help="reader/writer race stress (default 20 s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="qa-crash-"))
    print(f"seed {seed}; work directory {work}", flush=True)
    started = time.perf_counter()
    ok = True
    try:
        if args.kills:
            ok &= index_kills(args.kills, rng, work)
        if args.model_kills:
            ok &= model_kills(args.model_kills, rng, work)
        if args.race_seconds:
            ok &= race(args.race_seconds, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
