"""A judge of "does this passage answer?" learned on the vectors qa has: trained on
train splits, measured on valid ones. Measured and not kept (bench/results/gemma_tuning.md):
it refuses no more of IDK-MRC's real unanswerable questions than the cosine rule does.

    QA_BENCH_DATA=... QA_BENCH_CACHE=... .venv/bin/python bench/train_judge.py \
        --onnx-engine DIR

Examples (train splits only), each a question and the passage qa would show for it:
- every answerable question with the passage ranked first (label: is it the gold one),
  with its gold passage when that was not first (label 1), and with the passage ranked
  first once the gold one is left out (label 0: the nearest passage that doesn't answer);
- IDK-MRC's unanswerable questions with the passage ranked first (label 0): questions
  on a paragraph's own subject that it doesn't answer, the kind one cosine can't refuse.
Datasets: IDK-MRC, TyDi-id (its first 1,500 paragraphs), FacQA, NusaX's English
sentences of five-sentence Indonesian passages (nusax5, across languages).

Each candidate judge (logistic regression, or a one-hidden-layer network, over a grid of
regularisation) is then measured on the valid splits the way bench/tune_refusal.py
measures rules: a question is refused when qa's rule today refuses it or the judge's
probability is under a threshold; the threshold is the one refusing the largest mean
share of the unanswerable sets while refusing at most ``--max-refused`` of every
answerable set (margin, floor and the judge's threshold chosen together).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import Vectors, background_for  # noqa: E402
from tune_refusal import Asked, Pool, pool_rows, prepared, question_sets, signals  # noqa: E402

from qa.models.names import GEMMA_MODEL  # noqa: E402
from qa.retriever import config_for_model  # noqa: E402

TRAIN = ("idk", "tydi@1500", "facqa", "nusax5")


def judge_features(question: np.ndarray, passage: np.ndarray, sentences: np.ndarray, background: float) -> np.ndarray:
    """The judge's input for one question and one passage (unit vectors; the passage's
    sentences as rows, possibly none): the coordinate-wise products of the question with
    the passage and with its best sentence, then both cosines, the question's background
    level and the cosines' margins over it."""
    passage_cos = float(passage @ question)
    if len(sentences):
        scores = sentences @ question
        sentence, sentence_cos = sentences[int(np.argmax(scores))], float(scores.max())
    else:
        sentence, sentence_cos = passage, passage_cos
    scalars = np.array([passage_cos, sentence_cos, background, passage_cos - background, sentence_cos - background])
    return np.concatenate([question * passage, question * sentence, scalars]).astype(np.float32)


class Judge:
    """A fitted scikit-learn classifier over standardised features."""

    def __init__(self, model, mean: np.ndarray, scale: np.ndarray):
        self.model, self.mean, self.scale = model, mean, scale

    def probability(self, features: np.ndarray) -> np.ndarray:
        """The probability that each row's passage answers its question."""
        return self.model.predict_proba((features - self.mean) / self.scale)[:, 1]
VALID = ("idk", "tydi", "facqa", "nusax5", "nusax")


def sentence_rows(pool: Pool) -> list[np.ndarray]:
    """Each passage's sentence vectors."""
    starts = np.searchsorted(pool.sentence_owner, np.arange(len(pool.texts) + 1))
    return [pool.sentence_vectors[starts[i]:starts[i + 1]] for i in range(len(pool.texts))]


class Judged:
    """Questions asked of a pool: the rule's signals and the judge's features of the first passage."""

    def __init__(self, asked: Asked, pool: Pool, config, background: np.ndarray, drop_gold: bool):
        sentences = sentence_rows(pool)
        rows, features, firsts = [], [], []
        for question, question_terms, gold in zip(asked.vectors, asked.terms, asked.gold):
            keep = pool_rows(pool, gold, drop_gold)
            best, margin, _, first = signals(question, question_terms, pool, keep, config, background)
            level = best - margin
            rows.append((best, margin))
            features.append(judge_features(question, pool.vectors[first], sentences[first], level))
            firsts.append(first)
        self.best, self.margin = (np.asarray(c) for c in zip(*rows)) if rows else (np.zeros(0), np.zeros(0))
        self.features = np.asarray(features, dtype=np.float32)
        self.first = np.asarray(firsts)

    def rule_refuses(self, config) -> np.ndarray:
        """Which questions qa's rule today refuses (margin and floor)."""
        return (self.margin < config.answer_margin) | (self.best < config.answer_floor)


def training_examples(data: dict, config, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (features, labels) from the train splits (see the module's docstring)."""
    xs, ys = [], []
    for name, (pool, asked, unanswerable) in data.items():
        sentences = sentence_rows(pool)
        full = Judged(asked, pool, config, background, drop_gold=False)
        near = Judged(asked, pool, config, background, drop_gold=True)
        gold = np.asarray(asked.gold)
        xs += [full.features, near.features]
        ys += [(full.first == gold).astype(np.float32), np.zeros(len(gold), np.float32)]
        missed = np.flatnonzero(full.first != gold)
        for i in missed:
            background_level = full.best[i] - full.margin[i]
            xs.append(judge_features(asked.vectors[i], pool.vectors[gold[i]], sentences[gold[i]], background_level)[None])
            ys.append(np.ones(1, np.float32))
        if unanswerable.gold:
            own = Judged(unanswerable, pool, config, background, drop_gold=False)
            xs.append(own.features)
            ys.append(np.zeros(len(own.first), np.float32))
        print(f"  {name}: {sum(len(y) for y in ys)} examples so far", flush=True)
    return np.concatenate(xs), np.concatenate(ys)


def valid_sets(data: dict, config, background: np.ndarray) -> tuple[dict, dict, dict]:
    """Return (answerable, unanswerable, hit@1): Judged sets by name (tune_refusal's
    question_sets), and each dataset's Hit@1."""
    answerable, unanswerable = question_sets(
        data, lambda asked, pool, drop_gold: Judged(asked, pool, config, background, drop_gold))
    hit = {name: float((judged.first == np.asarray(data[name][1].gold)).mean()) for name, judged in answerable.items()}
    return answerable, unanswerable, hit


def best_rule(sets: dict, probabilities: dict | None, answerable: set, max_refused: float):
    """Return (margin, floor, threshold, refused share per set): the rule "refuse when the
    margin or the evidence is under its threshold, or the judge's probability under its
    own" (no judge: ``probabilities`` None) refusing the most unanswerable questions
    (mean over the sets) with at most ``max_refused`` of every answerable set refused."""
    best = None
    thresholds = np.round(np.arange(0.0, 0.951, 0.02), 3) if probabilities else [0.0]
    for margin in np.round(np.arange(0.0, 0.1501, 0.01), 3):
        for floor in np.round(np.arange(0.15, 0.3501, 0.01), 3):
            base = {n: (s.margin < margin) | (s.best < floor) for n, s in sets.items()}
            if max(float(base[n].mean()) for n in answerable) > max_refused:
                continue
            for threshold in thresholds:
                shares = {n: float((base[n] | ((probabilities[n] < threshold) if probabilities else False)).mean())
                          for n in sets}
                if max(shares[n] for n in answerable) > max_refused:
                    break
                key = np.mean([v for n, v in shares.items() if n not in answerable])
                if best is None or key > best[0] + 1e-12:
                    best = (key, margin, floor, threshold, shares)
    return best[1:] if best else (None, None, None, {})


def fit(kind: str, strength: float, x: np.ndarray, y: np.ndarray, seed: int = 0) -> Judge:
    """Fit one candidate judge: ``kind`` "linear" (inverse L2 strength ``strength``) or
    "mlpN" (N hidden units, L2 ``strength``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    if kind == "linear":
        model = LogisticRegression(C=strength, max_iter=2000, class_weight="balanced")
    else:
        model = MLPClassifier(hidden_layer_sizes=(int(kind[3:]),), alpha=strength, max_iter=300,
                              early_stopping=True, random_state=seed)
    return Judge(model.fit(z, y), mean, scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-engine", required=True, help="the EmbeddingGemma engine folder")
    parser.add_argument("--max-refused", type=float, default=0.05)
    parser.add_argument("--candidates", default="linear:0.01,linear:0.1,linear:1,mlp32:1e-3,mlp32:1e-2,mlp64:1e-2")
    parser.add_argument("--train", default=",".join(TRAIN), help="train splits of these datasets")
    args = parser.parse_args()
    config = config_for_model(GEMMA_MODEL)
    vectors = Vectors(args.onnx_engine)
    background = background_for(vectors, "id")
    started = time.time()
    train = {name: prepared(name, vectors, True, "train") for name in args.train.split(",")}
    x, y = training_examples(train, config, background)
    print(f"train: {len(y)} examples, {int(y.sum())} positive ({time.time() - started:.0f} s)")
    valid = {name: prepared(name, vectors, True, "valid") for name in VALID}
    answerable, unanswerable, hit = valid_sets(valid, config, background)
    sets = {**answerable, **unanswerable}
    print("valid Hit@1: " + ", ".join(f"{n} {h:.3f}" for n, h in hit.items()))
    print("| judge | margin | floor | threshold | " + " | ".join(sets) + " | unanswerable refused, mean |")
    print("|---|---|---|---|" + "---|" * (len(sets) + 1))

    def row(label, margin, floor, threshold, shares):
        mean = np.mean([v for n, v in shares.items() if n not in answerable])
        print(f"| {label} | {margin:.3f} | {floor:.3f} | {threshold:.2f} | " + " | ".join(f"{shares[n]:.3f}" for n in sets)
              + f" | {mean:.3f} |", flush=True)
        return mean

    today = {n: float(s.rule_refuses(config).mean()) for n, s in sets.items()}
    row("rule today", config.answer_margin, config.answer_floor, 0.0, today)
    margin, floor, _, shares = best_rule(sets, None, set(answerable), args.max_refused)
    row("rule, best here", margin, floor, 0.0, shares)
    for candidate in args.candidates.split(","):
        kind, strength = candidate.split(":")
        judge = fit(kind, float(strength), x, y)
        probabilities = {n: judge.probability(s.features) for n, s in sets.items()}
        margin, floor, threshold, shares = best_rule(sets, probabilities, set(answerable), args.max_refused)
        if margin is None:
            print(f"| {candidate} | none within the limit |")
            continue
        row(candidate, margin, floor, threshold, shares)

if __name__ == "__main__":
    main()
