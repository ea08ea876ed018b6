"""Grid search of the retrieval weights on the valid splits (never on test).

    .venv/bin/python bench/tune.py

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


def prepared(name: str, vectors: Vectors):
    ds = load(name, "valid")
    sentences, owner = sentence_table(ds.passages)
    return ds, vectors.passages(ds.passages), vectors.passages(sentences), owner, Lexicon.build(ds.passages), \
        vectors.questions(ds.questions), [terms(q) for q in ds.questions]


def main() -> None:
    vectors = Vectors()
    background = background_for(vectors, "id")
    data = {name: prepared(name, vectors) for name in ("tydi", "facqa", "nusax", "idk")}
    print("| sentence_weight | lexical_weight | tydi hit@1 | facqa hit@1 | nusax hit@1 | idk answerable hit@1 |")
    print("|---|---|---|---|---|---|")
    for sw, lw in itertools.product([0.0, 0.3, 0.5, 0.7], [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]):
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
    # No-answer margins on IDK-MRC valid with the default weights.
    ds, p, s, owner, lex, q, qt = data["idk"]
    config = RetrievalConfig()
    margins = {True: [], False: []}
    for qv, t, gold in zip(q, qt, ds.gold):
        _, _, evidence = rank_passages(qv, p, s, owner, lex, t, config, k=1)
        margins[gold >= 0].append(evidence - background_level(qv, background))
    for threshold in (-0.02, -0.01, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05):
        refused_u = np.mean(np.asarray(margins[False]) < threshold)
        refused_a = np.mean(np.asarray(margins[True]) < threshold)
        print(f"idk valid, margin >= {threshold:+.2f}: unanswerable refused {refused_u:.3f}, answerable refused {refused_a:.3f}")


if __name__ == "__main__":
    main()
