"""Grid search of the retrieval weights on the valid splits (never on test).

    .venv/bin/python bench/tune.py [--onnx-engine DIR] [--dim N]

Uses bench/retrieval.py's cached vectors: run that once with --split valid first.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import Vectors, background_for, load, sentence_table  # noqa: E402

from qa.lexical import Lexicon, terms  # noqa: E402
from qa.retriever import RetrievalConfig, background_level, rank_passages  # noqa: E402


def prepared(name: str, vectors: Vectors, sentences_too: bool = True):
    ds = load(name, "valid")
    p = vectors.passages(ds.passages)
    if sentences_too:
        sentences, owner = sentence_table(ds.passages)
        s = vectors.passages(sentences)
    else:  # no sentence embedded: only sentence_weight 0 is scored
        s, owner = np.zeros((0, p.shape[1]), np.float32), np.zeros(0, np.int64)
    return ds, p, s, owner, Lexicon.build(ds.passages), vectors.questions(ds.questions), [terms(q) for q in ds.questions]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-engine", help="the engine folder given to bench/retrieval.py")
    parser.add_argument("--dim", type=int, help="keep only this many coordinates (Matryoshka)")
    parser.add_argument("--margins", default="-0.02,0.03,0.001",
                        help="no-answer thresholds tried: start,stop,step (another model, another scale)")
    parser.add_argument("--datasets", default="tydi,facqa,nusax,idk")
    parser.add_argument("--no-sentences", action="store_true", help="embed no sentence; sentence_weight 0 only")
    args = parser.parse_args()
    vectors = Vectors(args.onnx_engine, args.dim)
    background = background_for(vectors, "id")
    data = {name: prepared(name, vectors, not args.no_sentences) for name in args.datasets.split(",")}
    print("| sentence_weight | lexical_weight | " + " | ".join(f"{n} hit@1" for n in data) + " |")
    print("|---|---|" + "---|" * len(data))
    weights = [0.0] if args.no_sentences else [0.0, 0.3, 0.5, 0.7]
    for sw, lw in itertools.product(weights, [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]):
        config = RetrievalConfig(sentence_weight=sw, lexical_weight=lw)
        cells = []
        for name, (ds, p, s, owner, lex, q, qt) in data.items():
            hits = n = 0
            for qv, t, gold in zip(q, qt, ds.gold):
                if gold < 0:
                    continue
                order, _, _ = rank_passages(qv, p, s, owner, lex, t, config, k=1)
                hits += int(order[0] == gold)
                n += 1
            cells.append(f"{hits / n:.3f}")
        print(f"| {sw} | {lw} | " + " | ".join(cells) + " |")
    start, stop, step = (float(x) for x in args.margins.split(","))
    best = RetrievalConfig(sentence_weight=0.0) if args.no_sentences else RetrievalConfig()
    calibrate_no_answer(vectors, background, data, np.round(np.arange(start, stop + step / 2, step), 3), best)


def calibrate_no_answer(vectors: Vectors, background: np.ndarray, data: dict, thresholds: np.ndarray,
                        config: RetrievalConfig | None = None) -> None:
    """Print how many questions each "no answer" threshold refuses, and the one to use.

    Answerable: the valid questions of TyDi, FacQA and IDK-MRC against their own
    paragraphs. Unanswerable: IDK-MRC's (about the paragraph's own topic), and each of
    TyDi and FacQA's questions against the other's paragraphs (documents about something
    else). The threshold to use is the largest that refuses at most 5% of the
    answerable questions of every dataset.
    """
    config = config or RetrievalConfig()

    def margins(name: str, questions: str, answerable: bool) -> np.ndarray:
        ds, p, s, owner, lex, _, _ = data[name]
        qds, _, _, _, _, q, qt = data[questions]
        out = []
        for qv, t, gold in zip(q, qt, qds.gold):
            if (gold >= 0) != answerable:
                continue
            _, _, evidence = rank_passages(qv, p, s, owner, lex, t, config, k=1)
            out.append(evidence - background_level(qv, background))
        return np.asarray(out)

    answerable = {name: margins(name, name, True) for name in ("tydi", "facqa", "idk") if name in data}
    unanswerable = {}
    if "idk" in data:
        unanswerable["idk"] = margins("idk", "idk", False)
    if "tydi" in data and "facqa" in data:
        unanswerable["facqa on tydi"] = margins("tydi", "facqa", True)
        unanswerable["tydi on facqa"] = margins("facqa", "tydi", True)
    print("\n| margin threshold | " + " | ".join(f"{n} answerable refused" for n in answerable) + " | "
          + " | ".join(f"{n} unanswerable refused" for n in unanswerable) + " |")
    print("|---|" + "---|" * (len(answerable) + len(unanswerable)))
    for threshold in thresholds:
        cells = [f"{np.mean(m < threshold):.3f}" for m in (*answerable.values(), *unanswerable.values())]
        print(f"| {threshold:+.3f} | " + " | ".join(cells) + " |")
    chosen = max(t for t in thresholds if all(np.mean(m < t) <= 0.05 for m in answerable.values()))
    print(f"\nlargest threshold refusing <= 5% of every dataset's answerable questions: {chosen:+.3f}")

if __name__ == "__main__":
    main()
