"""How the vector index (qa.ann) scales: build time, query latency, recall, memory, disk.

Run from the repository root:

    .venv/bin/python bench/scale.py [--sizes 10000 100000 1000000] [--queries 1000]
        [--data random clustered e5like] [--out bench/results/scale.txt]

Prints a markdown table to stdout (progress goes to stderr). Every size of every data
set runs in three fresh processes, so that peak memory figures don't mix:

1. prepare: make the vectors and queries, find the exact top-100 of every query
   (faiss.knn, the exact inner product) and time an exact single-query scan;
2. build: load the vectors, ``build_vector_index`` (timed), ``write_vector_index``;
3. query: ``read_vector_index`` (memory-mapped when large, as qa would), then the
   queries one at a time, as a chat user asks them, with k=10 and k=100.

Peak memory is the step process's own peak RSS (VmHWM in /proc/self/status at its
end; not ``ru_maxrss``, which on Linux keeps the parent's RSS across fork+exec); it
includes the interpreter with numpy and faiss, the build's input vectors (1.5 KB a
vector), and pages of memory-mapped files that the process touched (page cache,
shared and evictable); "anon" is the query process's private memory (RssAnon) at
its end. Recall@10 is the share of the exact top-10 in the index's top-10;
"10@100" the share of the exact top-10 among its top 100, which is what a caller
re-scoring 100 candidates exactly ends up with.

Data: all but "real e5" are synthetic (embedding 1M passages would take days on 2
cores). "random": unit vectors with no structure, the hardest case for any index.
"clustered": a gaussian mixture around 2,000 random centres (cosine about 0.5
within a cluster), normalised. "e5like": a gaussian with the mean and covariance of
the real e5 passage vectors in .cache/bench, normalised. Queries: 80% database
vectors plus noise (cosine about 0.7 to their source; e5like: plus a fresh e5-like
residual, cosine about 0.9), 20% vectors unrelated to the database (random unit
vectors; e5like: fresh e5-like draws). "real e5": the distinct cached passage and
query vectors (multilingual-e5-small) with the approximate kind forced, since at its
size qa would search exactly.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa import ann  # noqa: E402

DIM = 384
REAL = REPO / ".cache" / "bench"
EXACT_LATENCY_QUERIES = 200
CENTRES = 2_000
DATA = ("random", "clustered", "e5like")


def say(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_vectors() -> tuple[np.ndarray, np.ndarray]:
    """The distinct cached e5 passage and query vectors, or empty arrays if none."""
    def distinct(pattern: str) -> np.ndarray:
        files = sorted(glob.glob(str(REAL / pattern)))
        if not files:
            return np.zeros((0, DIM), np.float32)
        x = np.concatenate([np.load(f, allow_pickle=False) for f in files])
        _, first = np.unique(x.round(5), axis=0, return_index=True)
        return unit(x[np.sort(first)])

    return distinct("passage-*.npy"), distinct("query-*.npy")


def make_data(kind: str, n: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(vectors, queries)`` of one data set; see the module docstring.

    Every synthetic vector is normalise(centre + noise): random has one centre, the
    origin; clustered has CENTRES random unit centres; e5like has the e5 mean as its
    centre and noise with the e5 covariance. Near queries are normalise(database
    vector + noise), unrelated ones normalise(centre + noise) with the origin or the
    e5 mean as centre.
    """
    if kind == "real":
        return real_vectors()
    rng = np.random.default_rng(seed)
    if kind == "e5like":
        passages, _ = real_vectors()
        mean = passages.mean(axis=0)
        chol = np.linalg.cholesky(np.cov((passages - mean).T) + 1e-6 * np.eye(DIM))
        centres = mean[None]

        def noise(m: int) -> np.ndarray:
            return (rng.standard_normal((m, DIM)) @ chol.T).astype(np.float32)
    else:
        centres = unit(rng.standard_normal((CENTRES, DIM))) if kind == "clustered" else np.zeros((1, DIM), np.float32)

        def noise(m: int) -> np.ndarray:
            return (rng.standard_normal((m, DIM)) / np.sqrt(DIM)).astype(np.float32)

    x = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # in chunks, to bound temporary memory
        m = min(100_000, n - start)
        x[start:start + m] = unit(centres[rng.integers(0, len(centres), m)] + noise(m))
    near, far = nq - nq // 5, nq // 5
    q_near = unit(x[rng.integers(0, n, near)] + noise(near))
    q_far = unit((mean if kind == "e5like" else 0) + noise(far))
    return x, np.concatenate([q_near, q_far])


def rss_mb(field: str = "VmRSS") -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def recall(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    if len(truth) == 0:
        return float("nan")
    return float(np.mean([len(set(f) & set(t[:k])) / k for f, t in zip(found.tolist(), truth.tolist())]))


# --------------------------------------------------------------------------- steps (child processes)


def step_prepare(work: Path, kind: str, n: int, nq: int) -> dict:
    import faiss

    x, q = make_data(kind, n, nq)
    _, truth = faiss.knn(q, x, min(100, len(x)), metric=faiss.METRIC_INNER_PRODUCT)
    np.save(work / "x.npy", x)
    np.save(work / "q.npy", q)
    np.save(work / "truth.npy", truth)
    faiss.omp_set_num_threads(1)
    times = []
    for row in q[:EXACT_LATENCY_QUERIES]:
        start = time.perf_counter()
        faiss.knn(row[None], x, 10, metric=faiss.METRIC_INNER_PRODUCT)
        times.append(time.perf_counter() - start)
    return {"n": len(x), "nq": len(q), "near": len(q) - len(q) // 5 if kind != "real" else len(q),
            "exact_p50_ms": 1000 * float(np.median(times))}


def step_build(work: Path, exact_max: int) -> dict:
    x = np.load(work / "x.npy")
    start = time.perf_counter()
    index = ann.build_vector_index(x, exact_max=exact_max)
    build_s = time.perf_counter() - start
    ann.write_vector_index(index, work / "index.faiss")
    return {"kind": ann.index_kind(len(x), exact_max), "build_s": build_s,
            "disk_mb": (work / "index.faiss").stat().st_size / 2**20, "build_peak_mb": rss_mb("VmHWM")}


def step_query(work: Path, near: int) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    q, truth = np.load(work / "q.npy"), np.load(work / "truth.npy")
    baseline = rss_mb()
    start = time.perf_counter()
    index = ann.read_vector_index(work / "index.faiss")
    open_ms = 1000 * (time.perf_counter() - start)
    mapped = str((work / "index.faiss").resolve()) in Path("/proc/self/maps").read_text()
    result = {"open_ms": open_ms, "mmap": mapped, "baseline_rss_mb": baseline}
    for k in (10, 100):
        times, found = [], []
        for row in q:
            start = time.perf_counter()
            _, ids = ann.search(index, row[None], k)
            times.append(time.perf_counter() - start)
            found.append(np.pad(ids[0], (0, k - ids.shape[1]), constant_values=-1))
        found_arr = np.array(found)
        result[f"p50_{k}_ms"] = 1000 * float(np.percentile(times, 50))
        result[f"p99_{k}_ms"] = 1000 * float(np.percentile(times, 99))
        result[f"recall_{k}"] = recall(found_arr, truth)
        result[f"recall_{k}_near"] = recall(found_arr[:near], truth[:near])
        result[f"recall_{k}_far"] = recall(found_arr[near:], truth[near:])
    result["anon_end_mb"] = rss_mb("RssAnon")
    result["query_peak_mb"] = rss_mb("VmHWM")
    return result


# --------------------------------------------------------------------------- parent


def run_step(argv: list[str]) -> dict:
    """Run one step in a fresh process and return its JSON result."""
    proc = subprocess.run([sys.executable, __file__, *argv], stdout=subprocess.PIPE, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"step failed ({proc.returncode}): {argv}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def measure(kind: str, n: int, nq: int, exact_max: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="qa-scale-") as tmp:
        common = ["--work", tmp, "--data", kind]
        say(f"{kind} {n or ''}: prepare")
        prepared = run_step(["--step", "prepare", *common, "--size", str(n), "--queries", str(nq)])
        say(f"{kind} {prepared['n']}: build")
        built = run_step(["--step", "build", *common, "--exact-max", str(exact_max)])
        say(f"{kind} {prepared['n']}: {built['kind']} built in {built['build_s']:.1f} s; query")
        queried = run_step(["--step", "query", *common, "--near", str(prepared["near"])])
    return {"data": kind, **prepared, **built, **queried}


LABELS = {
    "random": "random (synthetic)",
    "clustered": "clustered (synthetic)",
    "e5like": "e5-like (synthetic)",
    "real": "real e5, approx. forced",
}


def table(rows: list[dict]) -> str:
    head = ("| data | n | kind | build s | disk MB | build peak RSS MB (vectors) | query peak RSS MB (anon) "
            "| k=10 p50 / p99 ms | k=100 p50 / p99 ms | recall@10 | 10@100 | exact scan p50 ms |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {LABELS[r['data']]} | {r['n']:,} | {r['kind']} | {r['build_s']:.1f} | {r['disk_mb']:.1f} "
            f"| {r['build_peak_mb']:.0f} ({r['n'] * DIM * 4 / 2**20:.0f}) | {r['query_peak_mb']:.0f} ({r['anon_end_mb']:.0f}) "
            f"| {r['p50_10_ms']:.2f} / {r['p99_10_ms']:.2f} | {r['p50_100_ms']:.2f} / {r['p99_100_ms']:.2f} "
            f"| {r['recall_10']:.3f} | {r['recall_100']:.3f} | {r['exact_p50_ms']:.2f} |"
        )
    return "\n".join(lines)


def detail(rows: list[dict]) -> str:
    head = "| data | n | recall@10 near / unrelated queries | 10@100 near / unrelated | open ms | memory-mapped |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        far = "-" if r["data"] == "real" else None
        lines.append(
            f"| {LABELS[r['data']]} | {r['n']:,} | {r['recall_10_near']:.3f} / {far or format(r['recall_10_far'], '.3f')} "
            f"| {r['recall_100_near']:.3f} / {far or format(r['recall_100_far'], '.3f')} | {r['open_ms']:.1f} "
            f"| {'yes' if r['mmap'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--data", nargs="+", choices=(*DATA, "real"), default=list(DATA))
    parser.add_argument("--no-real", action="store_true", help="skip the real e5 vectors")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--step", choices=("prepare", "build", "query"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--exact-max", type=int, default=ann.EXACT_MAX, help=argparse.SUPPRESS)
    parser.add_argument("--near", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step == "prepare":
        print(json.dumps(step_prepare(args.work, args.data[0], args.size, args.queries)))
        return
    if args.step == "build":
        print(json.dumps(step_build(args.work, args.exact_max)))
        return
    if args.step == "query":
        print(json.dumps(step_query(args.work, args.near)))
        return

    have_real = len(real_vectors()[0]) > 0
    if "e5like" in args.data and not have_real:
        say("no e5 vectors in .cache/bench: skipping e5like")
        args.data.remove("e5like")
    import faiss

    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = [measure(kind, n, args.queries, ann.EXACT_MAX) for kind in args.data if kind != "real" for n in args.sizes]
    real = measure("real", 0, 0, 0) if have_real and not args.no_real else None
    load_after = os.getloadavg()
    real_note = ""
    if real:
        rows.append(real)
        real_note = (f"- \"real e5\": {real['n']} distinct multilingual-e5-small passage vectors and {real['nq']} real "
                     "query vectors from .cache/bench, with the approximate kind forced (exact_max=0); at that size qa "
                     "would use the exact flat index.\n")

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    baselines = [r["baseline_rss_mb"] for r in rows]
    report = f"""# Vector index at scale (bench/scale.py)

{datetime.datetime.now().isoformat(timespec='seconds')}; {platform.machine()}, {os.cpu_count()} cores, \
{mem_gb:.0f} GB RAM, shared with other jobs (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after): \
timings are noisy. Python {platform.python_version()}, faiss {faiss.__version__}, numpy {np.__version__}. \
{args.queries} queries per data set, d={DIM}, exact_max={ann.EXACT_MAX}, candidates re-scored={ann.CANDIDATES}. \
Total {time.perf_counter() - started:.0f} s.

{table(rows)}

Recall by query type (see the notes below):

{detail(rows)}

- All rows but "real e5" are synthetic vectors. "random": unit vectors without structure (the worst case); \
"clustered": gaussian mixture around {CENTRES} random centres, normalised; "e5-like": gaussian with the mean and \
covariance of the real e5 passage vectors, normalised. Queries: 80% "near" (a database vector plus noise, \
normalised), 20% "unrelated" (random unit vectors; e5-like: fresh draws of the same gaussian).
{real_note}- Build: one process, faiss's default threads (2) except the quantizer training (1 thread, see qa/ann.py). \
Queries: one at a time, faiss on 1 thread. "exact scan p50": faiss.knn of one query against all vectors (1 thread), \
the cost of exact search at that size.
- Peak RSS: VmHWM of each step's own process. The build's includes its input vectors (in brackets); \
the query process's includes touched pages of the memory-mapped index (shared page cache); \
before reading the index a query process had {min(baselines):.0f}-{max(baselines):.0f} MB (Python, numpy, faiss); \
"anon" is its RssAnon at the end.
- Recall@10: share of the exact top-10 (faiss.knn) in the index's top-10; 10@100: share of the exact top-10 in \
the index's top-100 (what a caller that re-scores 100 candidates exactly gets).
"""
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
