"""Hostile files and paths: FIFOs, devices, kernel pseudo-files, endless streams,
names that aren't UTF-8, link loops named on the command line. Each is a
one-line answer or correct behaviour, never a hang, a traceback or a broken index."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.discover import find_documents

from conftest import FAKE_MODEL

runner = CliRunner()
TESTS = Path(__file__).resolve().parent
FAKE_QA = TESTS / "fake_qa.py"


def run_qa(*args: str, timeout: float = 60, memory_gb: float | None = None) -> subprocess.CompletedProcess:
    def limit():
        if memory_gb:
            size = int(memory_gb * 1024 ** 3)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    env = {**os.environ, "QA_CACHE_DIR": str(TESTS.parent / ".cache")}
    env.pop("QA_MODEL", None)
    return subprocess.run([sys.executable, str(FAKE_QA), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=limit)


@pytest.mark.slow  # real qa processes that must not hang: seconds each
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_an_indexed_document_replaced_by_a_fifo_hangs_nothing(tmp_path):
    document = tmp_path / "notes.txt"
    document.write_text("Drones came from Iran in the spring.\n")
    index_dir = str(tmp_path / "index")
    assert run_qa("index", "--index-dir", index_dir, "--model", FAKE_MODEL, str(document)).returncode == 0
    document.unlink()
    os.mkfifo(document)
    asked = run_qa("ask", "--index-dir", index_dir, "drones from Iran", timeout=60)
    assert asked.returncode == 0, asked.stderr
    assert "Traceback" not in asked.stderr
    indexed = run_qa("index", "--index-dir", index_dir, timeout=60)
    assert "Traceback" not in indexed.stderr
    assert "not a regular file" in indexed.stderr


@pytest.mark.slow  # a real qa process: seconds
def test_eval_of_dev_zero_is_refused_in_bounded_memory(tmp_path):
    result = run_qa("eval", "--index-dir", str(tmp_path / "index"), "/dev/zero", timeout=60, memory_gb=2)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: /dev/zero: too large for an evaluation set") and result.stderr.count("\n") == 1


def test_eval_refuses_more_questions_than_its_bound(tmp_path, monkeypatch):
    from qa import evaluate

    monkeypatch.setattr(evaluate, "MAX_EVAL_QUESTIONS", 3)
    questions = tmp_path / "many.jsonl"
    questions.write_text('{"question": "what came", "answers": []}\n' * 4)
    with pytest.raises(evaluate.EvalSetError, match="more than 3 questions"):
        evaluate.read_eval_set(questions)
    questions.write_text('{"question": "what came", "answers": []}\n' * 3)
    assert len(evaluate.read_eval_set(questions)) == 3


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="no /proc here")
def test_a_kernel_pseudo_file_of_size_zero_is_not_called_empty():
    found = find_documents(["/proc/cpuinfo"])
    assert [str(path) for path in found.files] == ["/proc/cpuinfo"], found.skipped


def test_a_non_utf8_file_name_is_indexed_shown_readably_and_removable(fake_model, tmp_path):
    folder = tmp_path / "m1"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"Drones came from Iran in the spring.\n")
    (folder / "plain.txt").write_text("Tea grows on the hills.\n")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL, str(folder)]).exit_code == 0
    listed = runner.invoke(app, ["sources"])
    assert listed.exit_code == 0 and "caf\\xe9.txt" in listed.stdout, listed.output
    asked = runner.invoke(app, ["ask", "drones from Iran"])
    assert asked.exit_code == 0 and "caf\\xe9.txt" in asked.stdout, asked.output
    again = runner.invoke(app, ["index"])
    assert again.exit_code == 0 and "up to date" in again.stdout, again.output
    name = str(folder / os.fsdecode(b"caf\xe9.txt"))
    removed = runner.invoke(app, ["index", "--remove", name])
    assert removed.exit_code == 0 and "1 removed" in removed.stdout, removed.output
    assert "caf" not in runner.invoke(app, ["sources"]).stdout


def test_an_explicitly_named_symlink_loop_is_one_line(fake_model, tmp_path):
    loop = tmp_path / "self.txt"
    loop.symlink_to("self.txt")
    (tmp_path / "real.txt").write_text("Drones came from Iran.\n")
    named = runner.invoke(app, ["index", "--model", FAKE_MODEL, str(loop), str(tmp_path / "real.txt")])
    assert named.exception is None or isinstance(named.exception, SystemExit), named.exception
    assert "symbolic link loop" in named.output and "Traceback" not in named.output
    walked = runner.invoke(app, ["index", str(tmp_path)])
    assert walked.exit_code == 0, walked.output
    removed = runner.invoke(app, ["index", "--remove", str(loop)])
    assert removed.exception is None or isinstance(removed.exception, SystemExit), removed.exception
    assert removed.output.startswith("Error: ") and removed.output.count("\n") == 1


def test_an_index_kept_in_the_folder_it_indexes_still_finds_new_documents(fake_model, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Drones came from Iran.\n")
    first = runner.invoke(app, ["index", "--index-dir", str(docs), "--model", FAKE_MODEL, str(docs)])
    assert first.exit_code == 0, first.output
    (docs / "b.txt").write_text("Tea grows on the hills.\n")
    again = runner.invoke(app, ["index", "--index-dir", str(docs)])
    assert again.exit_code == 0 and "1 new" in again.stdout and "skipped" not in again.output, again.output
    named = runner.invoke(app, ["index", "--index-dir", str(docs), str(docs)])
    assert named.exit_code == 0 and "up to date" in named.stdout, named.output
    asked = runner.invoke(app, ["ask", "--index-dir", str(docs), "tea hills"])
    assert asked.exit_code == 0 and "b.txt" in asked.stdout, asked.output
    assert sorted(find_documents([docs]).files) == [docs / "a.txt", docs / "b.txt"]


def test_an_empty_index_dir_is_an_error_not_the_current_folder(fake_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    result = runner.invoke(app, ["index", "--index-dir", "", "--model", FAKE_MODEL, "a.txt"])
    assert result.exit_code == 2 and "--index-dir" in result.output and "is empty" in result.output
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_dev_stdin_is_named_as_typed(fake_model, tmp_path):
    with open(os.devnull) as null:
        result = subprocess.run([sys.executable, str(FAKE_QA), "index", "--index-dir", str(tmp_path / "idx"),
                                 "--model", FAKE_MODEL, "/dev/stdin"], stdin=null, capture_output=True, text=True,
                                timeout=60, env={**os.environ, "QA_CACHE_DIR": str(TESTS.parent / ".cache")})
    assert result.returncode == 1 and result.stderr.startswith("Error: /dev/stdin: not a regular file"), result.stderr


def test_an_index_dir_that_is_a_symlink_loop_says_so(fake_model, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    (tmp_path / "a.txt").write_text("Drones came from Iran.\n")
    result = runner.invoke(app, ["index", "--index-dir", str(loop), "--model", FAKE_MODEL, str(tmp_path / "a.txt")])
    assert result.exit_code == 1 and "symbolic link that leads nowhere" in result.output, result.output


def test_a_link_planted_at_the_probe_name_is_never_written_through(fake_model, tmp_path):
    from qa.store import ensure_writable

    index_dir, victim = tmp_path / "idx", tmp_path / "victim.txt"
    index_dir.mkdir()
    victim.write_text("precious")
    for pid in range(os.getpid() - 5, os.getpid() + 6):  # the old probe's name was .tmp-probe-<pid>
        (index_dir / f".tmp-probe-{pid}").symlink_to(victim)
    ensure_writable(index_dir)
    assert victim.read_text() == "precious"


@pytest.mark.slow  # real qa processes that must not hang: seconds each
@pytest.mark.parametrize("target", ["CURRENT", "manifest.json", "passages.jsonl", "vectors.npy"])
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_an_index_file_replaced_by_dev_zero_or_a_fifo_is_damage_not_a_hang(tmp_path, target, kind):
    from qa.signing import sign  # noqa: F401 - the subprocesses share this test's key
    document = tmp_path / "notes.txt"
    document.write_text("Drones came from Iran in the spring.\n")
    index_dir = tmp_path / "index"
    assert run_qa("index", "--index-dir", str(index_dir), "--model", FAKE_MODEL, str(document)).returncode == 0
    generation = (index_dir / "CURRENT").read_text().split()[0]
    path = index_dir / target if target == "CURRENT" else index_dir / generation / target
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    result = run_qa("ask", "--index-dir", str(index_dir), "drones", timeout=60, memory_gb=2)
    assert "damaged" in result.stderr and "Traceback" not in result.stderr, result.stderr
    if target == "CURRENT":  # recovered from the generation it named, which is intact
        assert result.returncode == 0 and "Drones" in result.stdout, result.stderr
    else:
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
