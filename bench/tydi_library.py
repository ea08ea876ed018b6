"""A realistic library: every TyDi-id paragraph as its own document, through qa's real path.

    .venv/bin/python bench/tydi_library.py [--limit N] [--keep]

Writes each distinct paragraph of TyDi QA GoldP Indonesian (train + valid + test,
about 4,650) to its own ``.txt`` file, indexes the folder with ``update_index`` and
the default model (sentence-transformers, as ``qa index`` does), then asks every
test question through ``Retriever.ask`` with the fast query path (as ``qa ask``
does). It prints:

- the real embedding throughput on this machine: passages, sentences and texts per
  second of embedding, and the time to index 100k passages that it implies;
- Hit@1, Hit@5 and MRR of the test questions against the whole library, where a
  hit is a passage of the question's own paragraph.

The index is kept in ``.cache/bench/tydi-library`` (``--keep`` reuses it, so only the
questions are asked again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "tydiqa_id_goldp"
WORK = REPO / ".cache" / "bench" / "tydi-library"


def paragraphs_and_questions(limit: int | None) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Return {file name: paragraph} over all splits, and (question, gold file) of the test split."""
    files: dict[str, str] = {}
    by_text: dict[str, str] = {}
    questions = []
    for split in ("test", "valid", "train"):
        for row in json.loads((DATA / f"{split}.json").read_text(encoding="utf-8")):
            text = row["context"].strip()
            name = by_text.get(text)
            if name is None:
                if limit and len(files) >= limit:
                    continue
                name = f"{split}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.txt"
                by_text[text] = name
                files[name] = text
            if split == "test":
                questions += [(qa["question"], name) for qa in row["qas"] if not qa.get("is_impossible")]
    return files, questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="index only this many paragraphs (a quick run)")
    parser.add_argument("--keep", action="store_true", help="reuse the index of an earlier run")
    parser.add_argument("--passages-only", action="store_true",
                        help="embed no sentence vectors: the same Hit@1 for a model whose ranking gives sentences "
                             "no weight (EmbeddingGemma), in a quarter of the time; no throughput figure")
    args = parser.parse_args()
    if args.passages_only:
        import qa.index_rows

        from qa.embedder import load_embedder as _load
        from qa.retriever import config_for_model

        if config_for_model(_load().name).sentence_weight:
            raise SystemExit("--passages-only: this model's ranking weighs sentences; its Hit@1 would change")
        qa.index_rows.split_sentences = lambda *args, **kwargs: []

    from qa.embedder import load_embedder, load_query_embedder
    from qa.indexer import update_index
    from qa.retriever import Retriever
    from qa.store import read_index

    files, questions = paragraphs_and_questions(args.limit)
    corpus, index_dir = WORK / "corpus", WORK / "index"
    if args.keep and not (index_dir / "CURRENT").exists():
        raise SystemExit(f"--keep: no index of an earlier run in {index_dir}; run without --keep first")
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
        corpus.mkdir(parents=True)
        for name, text in files.items():
            (corpus / name).write_text(text + "\n", encoding="utf-8")
        embedder = load_embedder()
        timed = {"seconds": 0.0, "texts": 0}
        original = embedder.embed_passages

        def embed_passages(texts, progress=None):
            started = time.perf_counter()
            out = original(texts, progress)
            timed["seconds"] += time.perf_counter() - started
            timed["texts"] += len(texts)
            return out

        embedder.embed_passages = embed_passages
        last = [0.0]

        def progress(done: int, total: int, what: str = "texts") -> None:
            if time.monotonic() - last[0] > 30 or done == total:
                last[0] = time.monotonic()
                print(f"  {what}: {done}/{total}", flush=True)

        started = time.perf_counter()
        report = update_index(index_dir, [corpus], embedder=embedder, notify=print, progress=progress)
        total = time.perf_counter() - started
        snapshot = read_index(index_dir)
        n_passages = len(snapshot.passages)
        n_sentences = snapshot.content.sentence_vectors.shape[0]
        per_passage = timed["seconds"] / n_passages
        print(f"\nindexed {report.documents} documents: {n_passages} passages, {n_sentences} sentences, "
              f"in {total:.0f} s ({timed['seconds']:.0f} s embedding {timed['texts']} texts)")
        print(f"throughput: {n_passages / timed['seconds']:.2f} passages/s with their sentences "
              f"({timed['texts'] / timed['seconds']:.1f} texts/s); "
              f"100k passages would take {100_000 * per_passage / 3600:.1f} h")
    retriever = Retriever(read_index(index_dir), load_query_embedder())
    ranks = []
    started = time.perf_counter()
    for question, gold in questions:
        answer = retriever.ask(question, top_k=20)
        names = [Path(p.passage.source).name for p in answer.passages]
        ranks.append(names.index(gold) + 1 if gold in names else None)
    seconds = time.perf_counter() - started
    n = len(ranks)
    hit1 = sum(r == 1 for r in ranks) / n
    hit5 = sum(r is not None and r <= 5 for r in ranks) / n
    mrr = sum(1 / r for r in ranks if r) / n
    print(f"\nTyDi-id test, {n} questions against all {len(read_index(index_dir).manifest.to_json()['documents'])} "
          f"paragraphs: Hit@1 {hit1:.3f}  Hit@5 {hit5:.3f}  MRR {mrr:.3f}  ({1000 * seconds / n:.0f} ms a question)")


if __name__ == "__main__":
    main()
