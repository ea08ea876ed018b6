"""Refusal rules tuned on the valid splits, with unanswerable questions made from them.

    QA_BENCH_DATA=... QA_BENCH_CACHE=... .venv/bin/python bench/tune_refusal.py \
        --onnx-engine DIR [--datasets tydi,nusax] [--config SW,LW] [--max-refused 0.05]

The valid splits of TyDi-id and NusaX have no unanswerable question, so this makes two kinds:

- near-topic: each valid question asked of its own dataset's passages without its gold
  passage (and any passage of the same text): the best remaining passage is the nearest
  non-answer, on the same kind of subject.
- off-topic: each dataset's questions asked of another dataset's passages (TyDi's Wikipedia
  questions of NusaX's review sentences, and the reverse).

Every question is also asked of its full pool (answerable), and IDK-MRC's unanswerable
questions (about their paragraph's own subject) of theirs. For each question and pool it
records the signals a refusal rule can use, from the passage qa would rank first:

- ``best``: its semantic score (the dense cosine, mixed with the best sentence when the
  sentence weight is not 0): the evidence qa judges;
- ``margin``: ``best`` minus the question's background level (qa's rule today);
- ``gap``: ``best`` minus the best semantic score of any other passage (each passage is its
  own document here).

Each rule (one signal, or two joined by "or") is tried over a grid of thresholds; a rule's
pick is the threshold(s) that refuse the largest share of synthetic unanswerable questions
(the mean over the unanswerable sets) while refusing at most ``--max-refused`` of every
dataset's answerable questions. Vectors come from bench/retrieval.py's cache (run it once
with ``--split valid`` on the same datasets, or let this embed them).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import Vectors, background_for, load, sentence_table  # noqa: E402

from qa.lexical import Lexicon, terms  # noqa: E402
from qa.retriever import RetrievalConfig, background_level, best_sentence_scores  # noqa: E402

SIGNALS = ("best", "margin", "gap")


@dataclass
class Pool:
    """One dataset's passages, embedded: what questions are asked of."""

    name: str
    texts: list[str]
    vectors: np.ndarray
    sentence_vectors: np.ndarray
    sentence_owner: np.ndarray
    lexicon: Lexicon


@dataclass
class Asked:
    """Questions embedded, with their terms and gold passage (-1: none)."""

    name: str
    vectors: np.ndarray
    terms: list[list[str]]
    gold: list[int]


def signals(question: np.ndarray, question_terms: list[str], pool: Pool, keep: np.ndarray,
            config: RetrievalConfig, background: np.ndarray) -> tuple[float, float, float, int]:
    """Return (best, margin, gap, first passage) for one question asked of the ``keep`` rows of ``pool``.

    Ranks as :func:`qa.retriever.rank_passages` does (semantic score plus normalised BM25,
    the normalisation over the rows kept); ``best`` is the evidence of the first passage
    (its semantic score, with ``evidence_sentence_weight`` when set), ``gap`` its lead
    over every other kept passage's.
    """
    dense = pool.vectors @ question
    semantic = evidence = dense
    weight = config.sentence_weight if config.evidence_sentence_weight is None else config.evidence_sentence_weight
    if config.sentence_weight or weight:
        sentence = best_sentence_scores(question, pool.sentence_vectors, pool.sentence_owner, len(pool.texts))
        sentence = np.where(sentence > -1.0, sentence, dense)
        semantic = (1 - config.sentence_weight) * dense + config.sentence_weight * sentence
        evidence = (1 - weight) * dense + weight * sentence
    combined = semantic.copy()
    if config.lexical_weight and question_terms:
        lexical = pool.lexicon.scores(question_terms)
        top = float(lexical[keep].max()) if keep.any() else 0.0
        if top > 0:
            combined = semantic + config.lexical_weight * pool.lexicon.coverage(question_terms) * lexical / top
    combined = np.where(keep, combined, -np.inf)
    first = int(np.argmax(combined))
    best = float(evidence[first])
    others = np.where(keep, evidence, -np.inf)
    others[first] = -np.inf
    second = float(others.max()) if np.isfinite(others.max()) else -1.0
    return best, best - background_level(question, background), best - second, first


def pool_rows(pool: Pool, gold: int, drop_gold: bool) -> np.ndarray:
    """The rows of ``pool`` a question with gold passage ``gold`` is asked of: every one,
    or with ``drop_gold`` all but its gold passage and every passage of the same text."""
    if drop_gold and gold >= 0:
        return np.asarray([text != pool.texts[gold] for text in pool.texts])
    return np.ones(len(pool.texts), dtype=bool)


def table(asked: Asked, pool: Pool, config: RetrievalConfig, background: np.ndarray,
          drop_gold: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the (questions x 3) signals of ``asked`` against ``pool``, and which questions
    got their gold passage first.

    With ``drop_gold``, each question's gold passage, and every passage of the same text, is
    left out of the pool it is asked of.
    """
    rows, hits = [], []
    for question, question_terms, gold in zip(asked.vectors, asked.terms, asked.gold):
        *values, first = signals(question, question_terms, pool, pool_rows(pool, gold, drop_gold), config, background)
        rows.append(values)
        hits.append(first == gold)
    return np.asarray(rows, dtype=np.float64), np.asarray(hits)


def prepared(name: str, vectors: Vectors, sentences_too: bool, split: str = "valid") -> tuple[Pool, Asked, Asked]:
    """Load ``name``'s ``split`` and embed its passages (and sentences) and questions.

    Returns the pool, the answerable questions, and the dataset's own unanswerable ones
    (IDK-MRC's; none elsewhere)."""
    ds = load(name, split)
    p = vectors.passages(ds.passages)
    if sentences_too:
        sentences, owner = sentence_table(ds.passages)
        s = vectors.passages(sentences)
    else:
        s, owner = np.zeros((0, p.shape[1]), np.float32), np.zeros(0, np.int64)
    pool = Pool(name, ds.passages, p, s, owner, Lexicon.build(ds.passages))
    q = vectors.questions(ds.questions)

    def asked(rows: list[int]) -> Asked:
        return Asked(name, q[rows], [terms(ds.questions[i]) for i in rows], [ds.gold[i] for i in rows])

    return (pool, asked([i for i, g in enumerate(ds.gold) if g >= 0]),
            asked([i for i, g in enumerate(ds.gold) if g < 0]))


def source(name: str) -> str:
    """The dataset a name was made from: nusax5 is NusaX's sentences grouped, and IDK-MRC's
    paragraphs and answerable questions are TyDi's."""
    return {"nusax5": "nusax", "idk": "tydi"}.get(name, name)


def grid(values: np.ndarray, step: float) -> np.ndarray:
    """Thresholds from just below the smallest value to just above the largest, every ``step``."""
    low, high = np.floor(values.min() / step) * step, np.ceil(values.max() / step) * step + step
    return np.round(np.arange(low, high + step / 2, step), 4)


def refused(table_: np.ndarray, rule: dict[str, float]) -> np.ndarray:
    """Which questions ``rule`` ({signal: threshold}, joined by "or") refuses."""
    out = np.zeros(len(table_), dtype=bool)
    for signal, threshold in rule.items():
        out |= table_[:, SIGNALS.index(signal)] < threshold
    return out


def best_rule(signal_names: tuple[str, ...], answerable: dict[str, np.ndarray], unanswerable: dict[str, np.ndarray],
              grids: dict[str, np.ndarray], max_refused: float):
    """Return (rule, answerable refused per set, unanswerable refused per set) of the best
    thresholds for these signals: the most unanswerable questions refused (mean of the sets'
    shares) with at most ``max_refused`` of every answerable set refused; ties go to the
    rule refusing fewer answerable questions."""
    best = None
    for thresholds in itertools.product(*(grids[s] for s in signal_names)):
        rule = dict(zip(signal_names, thresholds))
        a = {n: float(refused(t, rule).mean()) for n, t in answerable.items()}
        if max(a.values()) > max_refused:
            continue
        u = {n: float(refused(t, rule).mean()) for n, t in unanswerable.items()}
        key = (np.mean(list(u.values())), -np.mean(list(a.values())))
        if best is None or key > best[0]:
            best = (key, rule, a, u)
    return best[1:] if best else (None, {}, {})


def question_sets(data: dict, measure) -> tuple[dict, dict]:
    """Return (answerable, unanswerable): ``measure(asked, pool, drop_gold)`` of every set of
    questions made from ``data`` ({name: prepared(...)}), by set name. Unanswerable sets:
    each dataset's questions without their gold passage (near), its own unanswerable
    questions (real), and its questions asked of a dataset of another source (off)."""
    answerable, unanswerable = {}, {}
    for name, (pool, asked, own_unanswerable) in data.items():
        answerable[name] = measure(asked, pool, False)
        unanswerable[f"{name} without gold (near)"] = measure(asked, pool, True)
        if own_unanswerable.gold:
            unanswerable[f"{name} unanswerable (real)"] = measure(own_unanswerable, pool, False)
    asked_of = set()
    for (name, (_, asked, _)), (other, (pool, _, _)) in itertools.permutations(data.items(), 2):
        # nusax5's passages hold nusax's answers, and asks nusax's questions again.
        if source(name) == source(other) or (source(name), other) in asked_of:
            continue
        asked_of.add((source(name), other))
        unanswerable[f"{name} on {other} (off)"] = measure(asked, pool, False)
    return answerable, unanswerable


def signal_tables(data: dict, config: RetrievalConfig, background: np.ndarray):
    """Return (answerable, unanswerable, hit@1): signal tables by set name, and each
    dataset's Hit@1 with ``config`` (:func:`question_sets`)."""
    answerable, unanswerable = question_sets(
        data, lambda asked, pool, drop_gold: table(asked, pool, config, background, drop_gold))
    hit = {name: float(hits.mean()) for name, (_, hits) in answerable.items()}
    return ({name: t for name, (t, _) in answerable.items()}, {name: t for name, (t, _) in unanswerable.items()}, hit)


def print_signals(answerable: dict, unanswerable: dict) -> None:
    """Print each set's signal quantiles."""
    print("Signals, quantiles 0 / 5% / 50% / 95% / 100%:\n")
    print("| set | questions | " + " | ".join(SIGNALS) + " |")
    print("|---|---|" + "---|" * len(SIGNALS))
    for kind, sets in (("answerable", answerable), ("unanswerable", unanswerable)):
        for name, t in sets.items():
            cells = [" / ".join(f"{v:+.3f}" for v in np.quantile(t[:, i], [0, 0.05, 0.5, 0.95, 1]))
                     for i in range(len(SIGNALS))]
            print(f"| {kind}: {name} | {len(t)} | " + " | ".join(cells) + " |")
    print()


def print_rules(answerable: dict, unanswerable: dict, step: float, max_refused: float) -> dict:
    """Print the best thresholds of every rule; return {rule label: mean unanswerable refused}."""
    everything = np.concatenate([*answerable.values(), *unanswerable.values()])
    grids = {s: grid(everything[:, i], step) for i, s in enumerate(SIGNALS)}
    rules = [(s,) for s in SIGNALS] + list(itertools.combinations(SIGNALS, 2))
    names_a, names_u = list(answerable), list(unanswerable)
    print("| rule | " + " | ".join(f"{n} answerable refused" for n in names_a) + " | "
          + " | ".join(f"{n} refused" for n in names_u) + " | unanswerable refused, mean |")
    print("|---|" + "---|" * (len(names_a) + len(names_u) + 1))
    out = {}
    for signal_names in rules:
        rule, a, u = best_rule(signal_names, answerable, unanswerable, grids, max_refused)
        if rule is None:
            print(f"| {' or '.join(signal_names)}: none within the limit |")
            continue
        label = " or ".join(f"{s} < {v:+.3f}" for s, v in rule.items())
        out[label] = float(np.mean(list(u.values())))
        print(f"| {label} | " + " | ".join(f"{a[n]:.3f}" for n in names_a) + " | "
              + " | ".join(f"{u[n]:.3f}" for n in names_u) + f" | {out[label]:.3f} |")
    print()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-engine", help="embed with this ONNX engine folder (as bench/retrieval.py)")
    parser.add_argument("--dim", type=int, help="keep only this many coordinates (Matryoshka)")
    parser.add_argument("--datasets", default="tydi,nusax,nusax5",
                        help="valid splits; at least two sources for off-topic questions")
    parser.add_argument("--configs", default="0.0,0.1",
                        help="rankings tried, sentence_weight,lexical_weight[,evidence_sentence_weight];... "
                             "(sentences are embedded when a sentence weight is not 0)")
    parser.add_argument("--split", default="valid", choices=["train", "valid"], help="never test")
    parser.add_argument("--max-refused", type=float, default=0.05, help="largest share of answerable questions refused")
    parser.add_argument("--step", type=float, default=0.005, help="threshold grid step")
    parser.add_argument("--signals", action="store_true", help="print each set's signal quantiles too")
    parser.add_argument("--save", help="write every question's signals to this .npz (the last config's)")
    args = parser.parse_args()
    configs = [RetrievalConfig(*(float(x) for x in c.split(",")[:2]),
                               evidence_sentence_weight=float(c.split(",")[2]) if c.count(",") > 1 else None)
               for c in args.configs.split(";")]
    vectors = Vectors(args.onnx_engine, args.dim)
    background = background_for(vectors, "id")
    sentences_too = any(c.sentence_weight or c.evidence_sentence_weight for c in configs)
    data = {name: prepared(name, vectors, sentences_too, args.split) for name in args.datasets.split(",")}
    print(f"`{' '.join(['python', 'bench/tune_refusal.py', *sys.argv[1:]])}` ({args.split} splits)\n")
    print(f"Best thresholds per rule: refused when any signal is below its threshold; at most "
          f"{args.max_refused:.0%} of each answerable set refused; grid step {args.step}.\n")
    summary = []
    for config in configs:
        sw, lw, esw = config.sentence_weight, config.lexical_weight, config.evidence_sentence_weight
        answerable, unanswerable, hit = signal_tables(data, config, background)
        print(f"### sentence {sw:g}, lexical {lw:g}, evidence's sentence weight {sw if esw is None else esw:g}: Hit@1 "
              + ", ".join(f"{n} {h:.3f}" for n, h in hit.items()) + "\n")
        if args.signals:
            print_signals(answerable, unanswerable)
        summary.append((f"{sw:g} | {lw:g} | {sw if esw is None else esw:g}", hit, print_rules(answerable, unanswerable, args.step, args.max_refused)))
        if args.save:
            np.savez(args.save, **{f"answerable:{n}": t for n, t in answerable.items()},
                     **{f"unanswerable:{n}": t for n, t in unanswerable.items()})
    print("### Summary: Hit@1, and the mean share of unanswerable questions each rule refuses at its best\n")
    kinds = [" or ".join(k) for k in [(s,) for s in SIGNALS] + list(itertools.combinations(SIGNALS, 2))]
    names = list(data)
    print("| sentence | lexical | evidence's sentence | " + " | ".join(f"{n} hit@1" for n in names) + " | "
          + " | ".join(kinds) + " |")
    print("|---|---|---|" + "---|" * (len(names) + len(kinds)))
    for weights, hit, rules in summary:
        by_kind = {" or ".join(s.split(" < ")[0] for s in label.split(" or ")): v for label, v in rules.items()}
        print(f"| {weights} | " + " | ".join(f"{hit[n]:.3f}" for n in names) + " | "
              + " | ".join(f"{by_kind[k]:.3f}" if k in by_kind else "-" for k in kinds) + " |")


if __name__ == "__main__":
    main()
