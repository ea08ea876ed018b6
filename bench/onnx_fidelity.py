"""How close the ONNX engine's vectors are to sentence-transformers', on 1,000 real texts.

    .venv/bin/python bench/onnx_fidelity.py --model ST_DIR --engine DIR [--engine DIR2 ...] [--limit N]

Texts (seeded, from ../shared/data, train splits only): 300 TyDi-id paragraphs and 200
NusaX Indonesian sentences as passages, 300 TyDi-id questions and 200 NusaX English
sentences as queries, each with the model's own prompt. Prints, per engine, the
cosine with the sentence-transformers vector (min, 1st percentile, median) and
whether the token ids equal the model tokenizer's. The reference vectors are cached
in ``.cache/bench`` (through torch they take many minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("QA_BENCH_DATA", REPO.parent / "shared" / "data"))
CACHE = REPO / ".cache" / "bench"


def real_texts() -> list[tuple[str, str]]:
    """(kind, text) pairs, kind "query" or "passage": the 1,000 texts described above."""
    rnd = random.Random(13)
    tydi = json.loads((DATA / "tydiqa_id_goldp" / "train.json").read_text(encoding="utf-8"))
    rnd.shuffle(tydi)
    out = [("passage", item["context"]) for item in tydi[:300]]
    out += [("query", q["question"]) for item in tydi[300:700] for q in item["qas"]][:300]
    with open(DATA / "nusax_mt" / "train.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rnd.shuffle(rows)
    out += [("query", r["english"]) for r in rows[:200]]
    out += [("passage", r["indonesian"]) for r in rows[200:400]]
    return out


def reference(model_dir: Path, texts: list[tuple[str, str]]) -> np.ndarray:
    """sentence-transformers vectors of ``texts`` with the model's prompts, cached."""
    key = hashlib.sha256((str(model_dir.resolve()) + json.dumps(texts)).encode()).hexdigest()[:20]
    path = CACHE / f"st-reference-{key}.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    out = np.zeros((len(texts), model.get_sentence_embedding_dimension()), np.float32)
    for kind, prompt in (("query", "query"), ("passage", "document")):
        rows = [i for i, (k, _) in enumerate(texts) if k == kind]
        out[rows] = model.encode([texts[i][1] for i in rows], prompt_name=prompt, batch_size=16,
                                 normalize_embeddings=True, convert_to_numpy=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the sentence-transformers folder exported")
    parser.add_argument("--engine", action="append", required=True, help="an export_onnx folder")
    parser.add_argument("--limit", type=int, default=0, help="only the first N texts of each kind")
    args = parser.parse_args()
    from qa.models.onnx_engine import OnnxEmbedder

    texts = real_texts()
    if args.limit:
        texts = [t for t in texts if t[0] == "query"][: args.limit] + [t for t in texts if t[0] == "passage"][: args.limit]
    want = reference(Path(args.model), texts)
    print(f"`python bench/onnx_fidelity.py {' '.join(sys.argv[1:])}`: {len(texts)} texts\n")
    print("| engine | cosine min | cosine 1st pct | cosine median | texts < 0.99 |")
    print("|---|---|---|---|---|")
    for folder in args.engine:
        engine = OnnxEmbedder(Path(folder))
        got = np.zeros_like(want)
        for kind, embed in (("query", engine.embed_queries), ("passage", engine.embed_passages)):
            rows = [i for i, (k, _) in enumerate(texts) if k == kind]
            got[rows] = embed([texts[i][1] for i in rows])
        cosines = np.sum(got * want, axis=1)
        print(f"| {folder} | {cosines.min():.4f} | {np.percentile(cosines, 1):.4f} | "
              f"{np.median(cosines):.4f} | {int((cosines < 0.99).sum())} |")


if __name__ == "__main__":
    main()
