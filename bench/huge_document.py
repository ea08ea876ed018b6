"""Memory of indexing one huge document: how many times over is it held?

    .venv/bin/python bench/huge_document.py [--mb 95] [--dim 384]

Writes a text file of about ``--mb`` megabytes (paragraphs of the bundled background
sentences, shuffled), indexes it with ``update_index`` in a fresh subprocess, and
prints the subprocess's peak resident memory next to the file's size and to what
the index must hold anyway (its passage and sentence vectors). The embedding model
is the tests' hashed bag-of-words fake with 384 dimensions, like the real model's:
the real model would take hours on a file this size, and memory is the question
here, not quality. A baseline run on a tiny file gives the interpreter's own share.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
from qa.indexer import update_index
from qa.store import read_index
started = time.perf_counter()
report = update_index(Path(sys.argv[1]), [Path(sys.argv[2])], embedder=FakeEmbedder(dim=int(sys.argv[3]), max_tokens=160))
seconds = time.perf_counter() - started
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before anything reads the index back
snapshot = read_index(Path(sys.argv[1]))
print(json.dumps({{
    "seconds": seconds,
    "passages": report.passages,
    "sentences": int(snapshot.content.sentence_vectors.shape[0]),
    "peak_kb": peak_kb,
}}))
"""


def write_corpus(path: Path, megabytes: float) -> int:
    """Write about ``megabytes`` MB of paragraphs to ``path``; return its size in bytes."""
    sentences = []
    for name in ("background_en.txt", "background_id.txt"):
        sentences += [s for s in (REPO / "qa" / "data" / name).read_text(encoding="utf-8").splitlines() if s]
    rng = random.Random(7)
    target = int(megabytes * 1024 * 1024)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            paragraph = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 6))) + "\n\n"
            handle.write(paragraph)
            written += len(paragraph.encode("utf-8"))
    return path.stat().st_size


def run(index_dir: Path, document: Path, dim: int) -> dict:
    child = CHILD.format(tests=str(REPO / "tests"))
    done = subprocess.run([sys.executable, "-c", child, str(index_dir), str(document), str(dim)],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=95.0, help="size of the document (under the 100 MB limit)")
    parser.add_argument("--dim", type=int, default=384, help="vector dimensions of the fake model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = tmp / "tiny.txt"
        tiny.write_text("A tiny document.\n", encoding="utf-8")
        base = run(tmp / "index-tiny", tiny, args.dim)
        huge = tmp / "huge.txt"
        size = write_corpus(huge, args.mb)
        big = run(tmp / "index-huge", huge, args.dim)
    mb = 1024 * 1024
    vectors = (big["passages"] + big["sentences"]) * args.dim * 4
    extra = big["peak_kb"] * 1024 - base["peak_kb"] * 1024
    print(f"document: {size / mb:.1f} MB, {big['passages']} passages, {big['sentences']} sentences; "
          f"indexed in {big['seconds']:.0f} s (fake model)")
    print(f"peak memory: {big['peak_kb'] / 1024:.0f} MB (a tiny document: {base['peak_kb'] / 1024:.0f} MB)")
    print(f"above the tiny run: {extra / mb:.0f} MB = {extra / size:.1f} x the file; "
          f"the vectors the index holds are {vectors / mb:.0f} MB, "
          f"so the rest is {(extra - vectors) / size:.1f} x the file")


if __name__ == "__main__":
    main()
