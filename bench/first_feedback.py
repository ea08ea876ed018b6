"""How long a new user stares at a silent terminal: qa's long first steps, timed in a pty.

Runs each command in a pseudo-terminal (as a person at a terminal sees it) with the
real default model, and records when each piece of output arrives. Reports the time to
the first output and the longest silence before the command ends, for this checkout
and, side by side, for another commit (``--against``, unpacked from git into a
temporary directory and run with the same Python), so the figures show what changed.

    .venv/bin/python bench/first_feedback.py [--against COMMIT] [--copies 30] [--timeout 300]

Steps timed, each with a fresh index directory and the model cache this checkout
already holds (the model build itself is timed only with ``--cold-model``):
``qa index FOLDER`` of ``--copies`` edited copies of the bundled article, and the
first ``qa ask`` (which indexes the bundled article, then answers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = next((ROOT / "qa" / "data").glob("*.txt"))


def timed_run(code_root: Path, args: list[str], env: dict, timeout: float) -> dict:
    """Run ``python -m qa.cli ARGS`` from ``code_root`` in a pty; return arrival times of its output."""
    child = pexpect.spawn(sys.executable, ["-m", "qa.cli", *args], cwd=str(code_root),
                          env={**env, "PYTHONPATH": str(code_root)}, timeout=timeout, dimensions=(40, 120))
    start = time.monotonic()
    arrivals = []
    while True:
        try:
            child.read_nonblocking(65536, timeout=max(0.0, timeout - (time.monotonic() - start)))
            arrivals.append(time.monotonic() - start)
        except pexpect.EOF:
            break
        except pexpect.TIMEOUT:
            child.close(force=True)
            return {"timeout": True}
    end = time.monotonic() - start
    child.close()
    points = [0.0, *arrivals]
    silences = [b - a for a, b in zip(points, points[1:])]
    return {"first": arrivals[0] if arrivals else None, "longest_silence": max(silences, default=end),
            "total": end, "status": child.exitstatus}


def make_folder(folder: Path, copies: int) -> None:
    """Write ``copies`` distinct documents (the article plus a line of its own) into ``folder``."""
    folder.mkdir(parents=True)
    text = ARTICLE.read_text(encoding="utf-8")
    for number in range(copies):
        (folder / f"doc{number:03}.txt").write_text(f"{text}\nCatatan {number}: dokumen nomor {number}.\n",
                                                    encoding="utf-8")


def unpack(commit: str, into: Path) -> Path:
    """Unpack ``commit`` of this repository into ``into`` and return it."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    """Time the steps for this checkout and ``--against``, and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None, help="a commit to time side by side")
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per command")
    parser.add_argument("--cold-model", action="store_true", help="build the model from scratch in each run")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qa-first-feedback-") as tmp:
        tmp = Path(tmp)
        make_folder(tmp / "docs", options.copies)
        codes = [("this checkout", ROOT)]
        if options.against:
            codes.append((options.against[:10], unpack(options.against, tmp / "against")))
        rows = []
        for label, code in codes:
            for step, args in (("qa index FOLDER", ["index", str(tmp / "docs")]),
                               ("first qa ask", ["ask", "Which drones did Russia import?"])):
                run_dir = tmp / f"run-{len(rows)}"
                env = {**os.environ, "QA_INDEX_DIR": str(run_dir / "index"), "TERM": "xterm-256color"}
                env["QA_CACHE_DIR"] = str(run_dir / "cache") if options.cold_model else str(ROOT / ".cache")
                result = timed_run(code, args, env, options.timeout)
                rows.append((label, step, result))
                shutil.rmtree(run_dir, ignore_errors=True)
                print(label, step, result, file=sys.stderr, flush=True)

    print(f"{'code':<14} {'step':<16} {'first output':>12} {'longest silence':>15} {'total':>8}")
    for label, step, result in rows:
        if result.get("timeout"):
            print(f"{label:<14} {step:<16} {'timed out':>12}")
            continue
        first = f"{result['first']:.2f} s" if result["first"] is not None else "none"
        print(f"{label:<14} {step:<16} {first:>12} {result['longest_silence']:>13.2f} s {result['total']:>6.1f} s")


if __name__ == "__main__":
    main()
