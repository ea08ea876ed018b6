"""Beyond one process: embedding on Ray vs locally, and Milvus Lite vs FAISS as the vector store.

Run from the repository root (needs the extras: bin/setup installs them):

    .venv/bin/python bench/scale_out.py [--texts 192] [--workers 1 2] [--sizes 100000 1000000]
        [--queries 300] [--skip-embed] [--skip-store] [--out bench/results/scale_out.txt]

Prints, side by side in one run on this machine:

1. Embedding throughput of the default model (multilingual-e5-small) on ``--texts``
   paragraphs of the bundled article (repeated to the count): the local path
   (``embed_passages`` in this process, the model already loaded; its load time is
   shown apart) and ``qa.ray_embed.embed_on_ray`` with 1 and 2 actors on a local Ray
   runtime started beforehand. A Ray figure is the wall time of the whole job, each
   actor loading its model included: that is what ``qa index --ray`` pays per run.
2. The vector stores at each of ``--sizes`` passages (the "clustered" synthetic data
   of bench/scale.py, 384 dims): FAISS as qa builds it (``qa.ann``: exact up to
   50,000 vectors, approximate beyond) and Milvus Lite through qa's Milvus backend
   (FLAT up to 50,000, IVF_FLAT beyond): build time (Milvus: insert, flush, index,
   load), single-query latency p50/p99 with k=10 (what a chat user waits for),
   recall@10 against the exact top-10, the process's resident memory growth while the
   store is built and searched, and the bytes on disk per passage.

Every step is bounded by the sizes given; 1M passages takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scale import make_data, recall, rss_mb  # noqa: E402

from qa import ann  # noqa: E402
from qa.embedder import DEFAULT_MODEL, load_embedder  # noqa: E402
from qa.paths import BUNDLED_ARTICLE  # noqa: E402


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def article_texts(n: int) -> list[str]:
    """``n`` paragraphs of the bundled article, cycled, each made distinct by its number."""
    paragraphs = [p.strip() for p in BUNDLED_ARTICLE.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 80]
    return [f"{paragraphs[i % len(paragraphs)]} ({i})" for i in range(n)]


def bench_embedding(n_texts: int, workers: list[int]) -> list[dict]:
    import ray

    from qa.ray_embed import embed_on_ray

    texts = article_texts(n_texts)
    rows = []
    started = time.perf_counter()
    embedder = load_embedder(DEFAULT_MODEL)
    load = time.perf_counter() - started
    embedder.embed_passages(texts[:8])  # warm up
    say(f"local: {n_texts} texts")
    started = time.perf_counter()
    local = embedder.embed_passages(texts)
    seconds = time.perf_counter() - started
    rows.append({"path": "local (this process)", "seconds": seconds, "rate": n_texts / seconds,
                 "note": f"model loaded once before: {load:.1f} s"})
    started = time.perf_counter()
    ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    startup = time.perf_counter() - started
    try:
        for count in workers:
            say(f"ray: {count} worker(s)")
            out = np.empty_like(local)
            started = time.perf_counter()
            for positions, vectors in embed_on_ray(texts, DEFAULT_MODEL, None, workers=count, batch_size=64):
                out[positions] = vectors
            seconds = time.perf_counter() - started
            rows.append({"path": f"Ray, {count} actor(s)", "seconds": seconds, "rate": n_texts / seconds,
                         "note": f"max abs diff to local {np.abs(out - local).max():.1e}; runtime start {startup:.1f} s apart"})
    finally:
        ray.shutdown()
    return rows


def latencies(search, queries: np.ndarray) -> tuple[np.ndarray, float, float]:
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = search(query[None, :], 10)
        times.append(time.perf_counter() - started)
        found.append(ids[0])
    ms = np.array(times) * 1000
    return np.array(found), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import faiss

    _, ids = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    return ids


def bench_store(name: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path) -> dict:
    rss_before = rss_mb()
    gen = work / f"gen-{name}"
    gen.mkdir()
    if name == "faiss":
        started = time.perf_counter()
        index = ann.build_vector_index(vectors)
        ann.write_vector_index(index, gen / "vectors.faiss")
        build = time.perf_counter() - started
        search = lambda q, k: ann.search(index, q, k)  # noqa: E731
        disk = (gen / "vectors.faiss").stat().st_size
        kind = ann.index_kind(len(vectors))
    else:
        from qa.milvus_store import MilvusBackend, close_clients

        backend = MilvusBackend(f"milvus:{work / 'vectors.db'}")
        started = time.perf_counter()
        record = backend.write(vectors, gen, gen.name)
        build = time.perf_counter() - started
        store = backend.open(record, gen, vectors, lambda _name: None)
        store.search(queries[:1], 10)  # connects and checks the collection once
        search = store.search
        kind = record["index"]
        disk = sum(p.stat().st_size for p in (work / "vectors.db").rglob("*") if p.is_file())
    found, p50, p99 = latencies(search, queries)
    row = {"store": name, "kind": kind, "build_s": build, "p50_ms": p50, "p99_ms": p99,
           "recall10": recall(found, truth), "rss_mb": rss_mb() - rss_before, "disk_b": disk / len(vectors)}
    if name != "faiss":
        close_clients()
    return row


def bench_stores(sizes: list[int], n_queries: int) -> list[dict]:
    rows = []
    for n in sizes:
        say(f"stores: {n} vectors")
        vectors, queries = make_data("clustered", n, n_queries)
        truth = exact_top10(vectors, queries)
        for name in ("faiss", "milvus-lite"):
            with tempfile.TemporaryDirectory(prefix="qa-scale-out-") as work:
                say(f"  {name}")
                rows.append({"n": n, **bench_store(name, vectors, queries, truth, Path(work))})
        del vectors
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=192)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    lines = [f"# bench/scale_out.py on {platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}", ""]
    if not args.skip_embed:
        lines += ["## Embedding throughput (multilingual-e5-small, bundled-article paragraphs)", "",
                  "| path | texts | seconds | texts/s | note |", "|---|---:|---:|---:|---|"]
        for row in bench_embedding(args.texts, args.workers):
            lines.append(f"| {row['path']} | {args.texts} | {row['seconds']:.1f} | {row['rate']:.1f} | {row['note']} |")
        lines.append("")
    if not args.skip_store:
        lines += ["## Vector stores (clustered synthetic, 384 dims, single queries, k=10)", "",
                  "| passages | store | index | build s | p50 ms | p99 ms | recall@10 | RSS growth MB | disk B/passage |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in bench_stores(args.sizes, args.queries):
            lines.append(f"| {row['n']:,} | {row['store']} | {row['kind']} | {row['build_s']:.1f} | {row['p50_ms']:.2f} | "
                         f"{row['p99_ms']:.2f} | {row['recall10']:.3f} | {row['rss_mb']:.0f} | {row['disk_b']:.0f} |")
        lines.append("")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
