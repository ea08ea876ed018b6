"""Can a reader be trained here? e5-small's top layers fine-tuned as a cross-encoder.

    QA_BENCH_DATA=... QA_BENCH_CACHE=... .venv/bin/python bench/cross_encoder_probe.py \
        --onnx-engine GEMMA_ENGINE --e5 E5_FOLDER [--epochs 2] [--index GEMMA_INDEX]

No multilingual cross-encoder, NLI or extractive-QA model is to be had from PyPI, so this
measures the next best thing on this machine: multilingual-e5-small (qa's own build, as a
sentence-transformers folder) reading "query: QUESTION" and "passage: PASSAGE" together,
its lower 8 layers frozen (their outputs computed once) and its top 4 layers and a logit
on the first token trained with binary cross-entropy on the train splits:
- each answerable question with the passage EmbeddingGemma ranks first (label: is it
  the gold one), its gold passage when missed (1), and the best passage once the gold
  one is left out (0);
- IDK-MRC's unanswerable questions with the passage ranked first (0).
Samples: IDK-MRC 2,500 of each kind, TyDi-id 1,200 (of its first 1,500 paragraphs),
FacQA 1,000, NusaX's 500 (English of five-sentence Indonesian passages).

After each epoch, on the valid splits: the AUC of answerable against the nearest
non-answer, and on IDK-MRC against its real unanswerable questions, with the share of
those refused when 5% of the answerable ones are. The same AUC of the cosine Gemma
judges by today is the line to beat. With ``--index`` (a Gemma index of the bundled
article), the eval set's questions are scored too (a test set: reported, never tuned on).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import REPO, Vectors, background_for, load  # noqa: E402
from tune_refusal import pool_rows, prepared, signals  # noqa: E402

from qa.models.names import GEMMA_MODEL  # noqa: E402
from qa.retriever import config_for_model  # noqa: E402

FROZEN_LAYERS, MAX_LENGTH, BATCH = 8, 224, 16
TRAIN = {"idk": 2500, "tydi@1500": 1200, "facqa": 1000, "nusax5": None}
VALID = ("idk", "tydi", "facqa", "nusax5")


def pairs(name: str, split: str, limit: int | None, vectors: Vectors, background: np.ndarray, seed: int = 0) -> list:
    """(question, passage, label, kind, gemma evidence) for ``name``'s ``split`` (see the docstring)."""
    config = config_for_model(GEMMA_MODEL)
    ds = load(name, split)
    pool, asked, unanswerable = prepared(name, vectors, True, split)
    answerable_texts = [q for q, g in zip(ds.questions, ds.gold) if g >= 0]
    unanswerable_texts = [q for q, g in zip(ds.questions, ds.gold) if g < 0]
    rng = random.Random(seed)
    everything = pool_rows(pool, -1, drop_gold=False)
    out = []
    for i in rng.sample(range(len(asked.gold)), min(limit or len(asked.gold), len(asked.gold))):
        question, terms, gold = asked.vectors[i], asked.terms[i], asked.gold[i]
        best, _, _, first = signals(question, terms, pool, everything, config, background)
        out.append((answerable_texts[i], pool.texts[first], int(first == gold), "first", best))
        if first != gold:
            out.append((answerable_texts[i], pool.texts[gold], 1, "gold", float("nan")))
        best, _, _, near = signals(question, terms, pool, pool_rows(pool, gold, drop_gold=True), config, background)
        out.append((answerable_texts[i], pool.texts[near], 0, "near", best))
    for i in rng.sample(range(len(unanswerable.gold)), min(limit or len(unanswerable.gold), len(unanswerable.gold))):
        best, _, _, first = signals(unanswerable.vectors[i], unanswerable.terms[i], pool, everything, config, background)
        out.append((unanswerable_texts[i], pool.texts[first], 0, "unanswerable", best))
    return out


class CrossEncoder:
    """e5-small with its lower layers frozen and its top layers and a logit trained."""

    def __init__(self, e5_folder: str):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(e5_folder)
        self.model = AutoModel.from_pretrained(e5_folder).eval()
        self.top = copy.deepcopy(self.model.encoder.layer[FROZEN_LAYERS:])
        self.head = torch.nn.Linear(self.model.config.hidden_size, 1)

    def _batch(self, questions: list[str], passages: list[str]):
        return self.tokenizer([f"query: {q}" for q in questions], [f"passage: {p}" for p in passages],
                              truncation="only_second", max_length=MAX_LENGTH, padding=True, return_tensors="pt")

    def frozen(self, questions: list[str], passages: list[str]):
        """The frozen layers' output (fp16) and the additive attention mask of one batch."""
        torch = self.torch
        batch = self._batch(questions, passages)
        mask = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
        with torch.no_grad():
            hidden = self.model.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
            for layer in self.model.encoder.layer[:FROZEN_LAYERS]:
                hidden = _output(layer(hidden, attention_mask=mask))
        return hidden.half(), mask

    def logits(self, hidden, mask):
        """The trained layers' logit for each pair of a batch of frozen outputs."""
        hidden = hidden.float()
        for layer in self.top:
            hidden = _output(layer(hidden, attention_mask=mask))
        return self.head(hidden[:, 0]).squeeze(-1)


def _output(result):
    return result[0] if isinstance(result, tuple) else result


def cached(encoder: CrossEncoder, examples: list) -> list:
    """The frozen outputs of ``examples`` in batches of similar length: (rows, hidden, mask, labels)."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + len(examples[i][1]))
    out = []
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        hidden, mask = encoder.frozen([examples[i][0] for i in rows], [examples[i][1] for i in rows])
        out.append((rows, hidden, mask, encoder.torch.tensor([float(examples[i][2]) for i in rows])))
    return out


def scores(encoder: CrossEncoder, batches: list, n: int) -> np.ndarray:
    """The logit of each of ``n`` examples."""
    out = np.zeros(n)
    encoder.top.eval()
    with encoder.torch.no_grad():
        for rows, hidden, mask, _ in batches:
            out[rows] = encoder.logits(hidden, mask).numpy()
    encoder.top.train()
    return out


def report(name: str, examples: list, logit: np.ndarray) -> None:
    """Print the separations of one valid set, by the cross-encoder and by Gemma's evidence."""
    from sklearn.metrics import roc_auc_score

    kinds = np.asarray([e[3] for e in examples])
    labels = np.asarray([e[2] for e in examples])
    evidence = np.asarray([e[4] for e in examples])
    answered = (kinds == "first") & (labels == 1)
    for against in ("near", "unanswerable"):
        other = kinds == against
        if not other.any():
            continue
        truth = np.r_[np.ones(answered.sum()), np.zeros(other.sum())]
        parts = []
        for label, signal in (("cross-encoder", logit), ("Gemma cosine", evidence)):
            threshold = np.quantile(signal[answered], 0.05)
            parts.append(f"{label} AUC {roc_auc_score(truth, np.r_[signal[answered], signal[other]]):.3f}, "
                         f"refused at 5% {float((signal[other] < threshold).mean()):.3f}")
        print(f"  {name}, answerable vs {against}: " + "; ".join(parts), flush=True)


def article(encoder: CrossEncoder, index: str) -> None:
    """Score eval/article.jsonl's questions against the passages a Gemma index ranks first."""
    from qa.pipeline import open_retriever

    retriever = open_retriever(Path(index), GEMMA_MODEL, Path(index), lambda message: None)
    texts = [p.text for p in retriever.snapshot.passages]
    rows, hits, reranked = [], 0, 0
    for line in (REPO / "eval" / "article.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        answer = retriever.ask(item["question"], top_k=3)
        top = [p.passage.text for p in answer.passages]
        hidden, mask = encoder.frozen([item["question"]] * len(top), top)
        with encoder.torch.no_grad():
            logit = encoder.logits(hidden, mask).numpy()
        gold = {i for i, t in enumerate(texts) if any(a in t for a in item["answers"])}
        if gold:
            hits += texts.index(top[0]) in gold
            reranked += texts.index(top[int(np.argmax(logit))]) in gold
        rows.append((float(logit[0]), item["id"], bool(gold), answer.found))
    print(f"  article: Hit@1 {hits} by Gemma, {reranked} with its top 3 reordered by the cross-encoder")
    for logit, name, answerable, found in sorted(rows):
        print(f"    {logit:+.2f} {name} {'answerable' if answerable else 'unanswerable'}{'' if found else ' (refused today)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-engine", required=True, help="the EmbeddingGemma engine (for the candidates)")
    parser.add_argument("--e5", required=True, help="qa's multilingual-e5-small sentence-transformers folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the samples above (a quick run: 0.02)")
    parser.add_argument("--index", help="a Gemma index of the bundled article, to score eval/article.jsonl")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    vectors = Vectors(args.onnx_engine)
    background = background_for(vectors, "id")
    scaled = lambda limit: max(1, int(limit * args.scale)) if limit or args.scale < 1 else None  # noqa: E731
    train = [e for name, limit in TRAIN.items() for e in pairs(name, "train", scaled(limit or 500), vectors, background)]
    valid = {name: pairs(name, "valid", scaled(1000), vectors, background) for name in VALID}
    encoder = CrossEncoder(args.e5)
    started = time.time()
    train_batches = cached(encoder, train)
    valid_batches = {name: cached(encoder, examples) for name, examples in valid.items()}
    print(f"{len(train)} training pairs ({sum(e[2] for e in train)} positive), frozen layers run in "
          f"{time.time() - started:.0f} s", flush=True)
    params = [*encoder.top.parameters(), *encoder.head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=4e-5, weight_decay=0.01)
    steps = args.epochs * len(train_batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / steps))
    rng = random.Random(0)
    for epoch in range(args.epochs):
        started = time.time()
        rng.shuffle(train_batches)
        for _, hidden, mask, labels in train_batches:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(encoder.logits(hidden, mask), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        print(f"epoch {epoch + 1}: {len(train_batches)} steps in {time.time() - started:.0f} s", flush=True)
        for name, examples in valid.items():
            report(name, examples, scores(encoder, valid_batches[name], len(examples)))
    if args.index:
        article(encoder, args.index)


if __name__ == "__main__":
    main()
