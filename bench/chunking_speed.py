"""Chunking speed, old (counting prefixes) against new (cutting by token offsets).

    .venv/bin/python bench/chunking_speed.py [--model e5|gemma] [--mb 5] [--old-mb 0.5] [--huge-mb 100] [--huge-shape one-line]

Part 1 cuts text of three shapes with e5-small's real tokenizer (the model's
``tokenizer.json``, counted as qa's torch-free engine counts it: ``passage: `` and the
special tokens included) both ways, and prints MB/s of each and whether the passages
are identical (``--model gemma``: EmbeddingGemma's engine tokenizer instead, its
``tokenizer.model``, counted and offset by ``OnnxEmbedder``'s own methods, ``title: none |
text: `` and the special tokens included; part 2 is e5's only):

- ``one-line``: the bundled background sentences, one after another on one line;
- ``paragraphs``: the same sentences, 2-6 to a paragraph, paragraphs parted by blank lines;
- ``no-punctuation``: the same words without . ! ? … , ; : on one line (one sentence
  of megabytes, cut word by word).

The old way runs on ``--old-mb`` of each (it is slow: about 0.04 MB/s without
punctuation), the new one on ``--mb``, each with a tokenizer whose word memory starts
empty. Part 2 (``--huge-mb``, 0 to skip) writes a file of that many MB (10^6 bytes,
under qa's 100 MiB limit) and runs ``qa index`` on it in a pseudo-terminal, so that
its progress bars are drawn, with the same tokenizer and a hashed bag-of-words model
of 384 dimensions for the vectors (the real model would take hours to embed it);
it prints the time, the peak memory, and the bars' last lines.
"""

from __future__ import annotations

import argparse
import os
import pty
import random
import re
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import sys
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
from qa.embedder import register_embedder
from qa.models.e5_q4 import default_model_dir
from qa.paths import cache_dir
from tokenizers import Tokenizer
from qa.token_offsets import token_offsets_for


class RealTokensFakeVectors(FakeEmbedder):
    '''e5-small's tokenizer (counts and offsets, so passages are the real ones), hashed vectors.'''

    def __init__(self):
        super().__init__(name="fake-e5-tokens", dim=384, max_tokens=512)
        self.tokenizer = Tokenizer.from_file(str(default_model_dir(cache_dir()) / "tokenizer.json"))
        self.token_offsets = token_offsets_for(self.tokenizer)

    def count_tokens(self, text):
        return len(self.tokenizer.encode("passage: " + text).ids)


register_embedder("fake-e5-tokens", RealTokensFakeVectors)
from qa.cli import main
main()
"""


def sentences() -> list[str]:
    out = []
    for name in ("background_en.txt", "background_id.txt"):
        out += [s for s in (REPO / "qa" / "data" / name).read_text(encoding="utf-8").splitlines() if s]
    return out


def text_of(shape: str, size: int, seed: int = 7) -> str:
    """About ``size`` characters of ``shape`` (see the module's docstring)."""
    pool, rng = sentences(), random.Random(seed)
    pieces, n = [], 0
    while n < size:
        if shape == "paragraphs":
            piece = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 6))) + "\n\n"
        elif shape == "one-line":
            piece = rng.choice(pool) + " "
        else:
            piece = re.sub(r"[.!?…,;:]", "", rng.choice(pool)) + " "
        pieces.append(piece)
        n += len(piece)
    return "".join(pieces)[:size]


def real_counter():
    from tokenizers import Tokenizer

    from qa.models.e5_q4 import default_model_dir, is_complete_build
    from qa.paths import cache_dir

    folder = default_model_dir(cache_dir())
    if not is_complete_build(folder):
        sys.exit("build the default model first (bin/qa ask anything builds it)")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return lambda text: len(tokenizer.encode("passage: " + text).ids), tokenizer


def gemma_counter():
    """EmbeddingGemma's tokenizer with OnnxEmbedder's count_tokens and token_offsets (no ONNX session)."""
    import json

    from qa.models import onnx_engine
    from qa.models.gemma import gemma_engine_dir, is_gemma_engine_built
    from qa.paths import cache_dir

    if not is_gemma_engine_built(cache_dir()):
        sys.exit("build EmbeddingGemma's engine first (bin/qa ask anything builds it)")
    folder = gemma_engine_dir(cache_dir())
    meta = json.loads((folder / onnx_engine.ENGINE_FILE).read_text(encoding="utf-8"))

    class Tokens:
        count_tokens = onnx_engine.OnnxEmbedder.count_tokens
        token_offsets = onnx_engine.OnnxEmbedder.token_offsets

        def __init__(self):
            self._tokenizer = onnx_engine._load_tokenizer(folder, meta.get("sentencepiece"))
            self.passage_prompt = meta["passage_prompt"]

    tokens = Tokens()
    return tokens.count_tokens, tokens.token_offsets


def chunk(text: str, count, offsets):
    from qa.documents import ChunkSettings, Document, chunk_document

    started = time.perf_counter()
    passages = chunk_document(Document("x.txt", text, "0"), count, ChunkSettings(), token_offsets=offsets)
    return time.perf_counter() - started, [(p.start, p.end) for p in passages]


def speeds(mb: float, old_mb: float, model: str = "e5") -> None:
    from qa.token_offsets import token_offsets_for

    if model == "gemma":
        count, gemma_offsets = gemma_counter()
        fresh_offsets = lambda: gemma_offsets  # noqa: E731 - it remembers nothing
    else:
        count, tokenizer = real_counter()
        fresh_offsets = lambda: token_offsets_for(tokenizer)  # noqa: E731 - an empty word memory
    print(f"{'shape':16} {'old MB/s':>9} {'(MB)':>5} {'new MB/s':>9} {'(MB)':>5}  same passages")
    for shape in ("one-line", "paragraphs", "no-punctuation"):
        old_size = int(old_mb * 1e6 / (10 if shape == "no-punctuation" else 1))
        small = text_of(shape, old_size)
        old_seconds, old_spans = chunk(small, count, None)
        _, new_small = chunk(small, count, fresh_offsets())
        big = text_of(shape, int(mb * 1e6))
        new_seconds, _ = chunk(big, count, fresh_offsets())
        print(f"{shape:16} {len(small) / 1e6 / old_seconds:9.3f} {len(small) / 1e6:5.2f} "
              f"{len(big) / 1e6 / new_seconds:9.2f} {len(big) / 1e6:5.1f}  {old_spans == new_small}", flush=True)


def huge(megabytes: float, shape: str, timeout: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "QA_STATE_DIR": str(tmp / "state"), "QA_CONFIG": str(tmp / "none.toml"),
               "COLUMNS": "100"}
        tiny = tmp / "tiny.txt"
        tiny.write_text("A tiny document.\n", encoding="utf-8")
        run_in_terminal([sys.executable, "-c", CHILD.format(tests=str(REPO / "tests")), "index", "--model",
                         "fake-e5-tokens", "--index-dir", str(tmp / "tiny-index"), str(tiny)], env, timeout)
        baseline = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        document = tmp / f"{shape}.txt"
        document.write_text(text_of(shape, int(megabytes * 1e6)), encoding="utf-8")
        size = document.stat().st_size
        command = [sys.executable, "-c", CHILD.format(tests=str(REPO / "tests")), "index", "--model",
                   "fake-e5-tokens", "--index-dir", str(tmp / "index"), str(document)]
        screen, seconds, code = run_in_terminal(command, env, timeout)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).replace("\r", "\n").splitlines()
             if line.strip()]
    bars = list(dict.fromkeys(line.strip() for line in lines if "cutting into passages" in line))
    print(f"\nqa index of a {size / 1e6:.0f} MB {shape} file: exit {code} in {seconds:.0f} s, "
          f"peak memory {peak:.0f} MB (a tiny file: {baseline:.0f} MB)")
    if bars:
        print(f"its chunking bar ({len(bars)} states drawn), first, middle and last:",
              bars[0], bars[len(bars) // 2], bars[-1], sep="\n  ")
    print("its last lines:", *lines[-3:], sep="\n  ")


def run_in_terminal(command: list[str], env: dict, timeout: float) -> tuple[str, float, int]:
    """Run ``command`` with a pseudo-terminal as its output (so bars are drawn); return what
    it printed, its time and its exit code. Killed after ``timeout`` seconds."""
    leader, follower = pty.openpty()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env,
                               cwd=REPO)
    os.close(follower)
    chunks = []
    while True:
        if time.perf_counter() - started > timeout:
            process.kill()
            break
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    code = process.wait()
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace"), time.perf_counter() - started, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="e5", choices=["e5", "gemma"], help="whose tokenizer counts")
    parser.add_argument("--mb", type=float, default=5.0, help="MB of each shape cut the new way")
    parser.add_argument("--old-mb", type=float, default=0.5, help="MB of each shape cut the old way (a tenth without punctuation)")
    parser.add_argument("--huge-mb", type=float, default=100.0, help="MB of the file given to qa index (0: skip)")
    parser.add_argument("--huge-shape", default="one-line", choices=["one-line", "paragraphs", "no-punctuation"])
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds qa index may take")
    args = parser.parse_args()
    speeds(args.mb, args.old_mb, args.model)
    if args.huge_mb:
        huge(args.huge_mb, args.huge_shape, args.timeout)


if __name__ == "__main__":
    main()
