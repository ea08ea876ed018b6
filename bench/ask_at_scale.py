"""What a question costs on a large library: loading the index, then answering.

    .venv/bin/python bench/ask_at_scale.py [--documents 100] [--paragraphs 1000]

Builds (once; kept in ``.cache/bench/ask-at-scale``) a library of ``--documents``
text files of ``--paragraphs`` paragraphs each, made of the bundled background
sentences, with the tests' hashed bag-of-words model at 384 dimensions (the real
model would take hours; what is measured here does not depend on the vectors'
quality). Then, in a fresh process, it times ``read_index`` (checksums of every
file, parsing the passages), the retriever's set-up, and a few questions, and
reports the process's peak memory. Past 50,000 passages the index is the
approximate kind and questions re-score FAISS's candidates.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".cache" / "bench" / "ask-at-scale"
QUESTIONS = ["Which drones did Russia import?", "Siapa presiden pertama Indonesia?",
             "history of the city and its harbour", "kapan perang dunia kedua berakhir"]

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
from qa.retriever import Retriever
from qa.store import read_index
started = time.perf_counter()
snapshot = read_index(Path(sys.argv[1]))
loaded = time.perf_counter()
retriever = Retriever(snapshot, FakeEmbedder(dim=384, max_tokens=160))
ready = time.perf_counter()
times = []
for question in json.loads(sys.argv[2]):
    t = time.perf_counter()
    retriever.ask(question, top_k=3)
    times.append(time.perf_counter() - t)
status = open("/proc/self/status").read()
def kb(name):
    return int(status.split(name + ":")[1].split()[0])
print(json.dumps({{"read": loaded - started, "setup": ready - loaded, "questions": times,
                  "passages": len(snapshot.passages),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anon_mb": kb("RssAnon") / 1024, "file_mb": kb("RssFile") / 1024}}))
"""


def build(documents: int, paragraphs: int) -> Path:
    """Build the library's index once; return the index directory."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from conftest import FakeEmbedder

    from qa.indexer import update_index

    tag = WORK / f"{documents}x{paragraphs}"
    index_dir = tag / "index"
    if (index_dir / "CURRENT").exists():
        return index_dir
    docs = tag / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    sentences = [s for name in ("background_en.txt", "background_id.txt")
                 for s in (REPO / "qa" / "data" / name).read_text(encoding="utf-8").splitlines() if s]
    rng = random.Random(1)
    for d in range(documents):
        text = "\n\n".join(" ".join(rng.choice(sentences) for _ in range(rng.randint(2, 4))) + f" Item {d}-{i}."
                           for i in range(paragraphs))
        (docs / f"d{d}.txt").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    report = update_index(index_dir, [docs], embedder=FakeEmbedder(dim=384, max_tokens=160))
    print(f"built {report.passages} passages in {time.perf_counter() - started:.0f} s (fake model)")
    return index_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--paragraphs", type=int, default=1000)
    args = parser.parse_args()
    index_dir = build(args.documents, args.paragraphs)
    size = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    child = CHILD.format(tests=str(REPO / "tests"))
    out = subprocess.run([sys.executable, "-c", child, str(index_dir), json.dumps(QUESTIONS)],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    print(f"{m['passages']} passages, index {size / 2**20:.0f} MB on disk")
    print(f"read_index {m['read']:.2f} s (every checksum, the passages parsed); retriever set-up {m['setup']:.2f} s")
    print("questions: " + ", ".join(f"{1000 * t:.0f} ms" for t in m["questions"])
          + " (the first lexical question builds BM25's term index)")
    print(f"memory at the end: {m['anon_mb']:.0f} MB private, {m['file_mb']:.0f} MB of mapped index files "
          f"(shared page cache; the checksums read every file anyway); peak RSS {m['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
