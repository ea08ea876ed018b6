"""``qa serve`` as a process (with the fake model): start, stop, ports, tokens, and
``qa index`` running beside it while clients ask."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import FAKE_MODEL
from qa.paths import BUNDLED_ARTICLE

pytestmark = pytest.mark.slow  # real processes, seconds each

TESTS = Path(__file__).resolve().parent
FAKE_QA = TESTS / "fake_qa.py"


def qa_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "QA_CACHE_DIR": str(TESTS.parent / ".cache"), **extra}
    env.pop("QA_MODEL", None)
    if "QA_SERVE_TOKEN" not in extra:
        env.pop("QA_SERVE_TOKEN", None)
    return env


def run_qa(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FAKE_QA), *args], capture_output=True, text=True,
                          timeout=timeout, env=qa_env(**env))


class Server:
    """A ``qa serve --port 0`` process; ``url`` is where it answers."""

    def __init__(self, *args: str, **env: str):
        self.process = subprocess.Popen([sys.executable, str(FAKE_QA), "serve", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=qa_env(**env))
        self.first_lines = [self.process.stdout.readline()]
        found = re.search(r"http://[^/]+:(\d+)/", self.first_lines[0])
        if not found:
            self.process.kill()
            raise AssertionError(f"qa serve did not start: {self.first_lines} {self.process.stderr.read()}")
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self, sig=signal.SIGINT) -> tuple[str, str]:
        self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=30)
        return "".join(self.first_lines) + out, err


def request(url: str, body: dict | None = None, token: str | None = None, timeout: float = 60) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def index_dir(tmp_path):
    done = run_qa("index", "--model", FAKE_MODEL, "--index-dir", str(tmp_path / "index"))
    assert done.returncode == 0, done.stderr
    return tmp_path / "index"


def test_qa_help_does_not_load_the_web_server():
    code = "import sys; from qa.cli import app; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=qa_env(), timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_answers_then_stops_cleanly(index_dir, sig):
    server = Server("--index-dir", str(index_dir))
    try:
        status, answer = request(server.url + "api/ask", {"question": "Mohajer-6 Shahed drone"})
        assert status == 200 and "Mohajer-6" in answer["passages"][0]["text"]
        status, health = request(server.url + "api/health")
        assert status == 200 and health["model"] == FAKE_MODEL
    finally:
        out, err = server.stop(sig)
    assert server.process.returncode == 0, err
    assert out.strip().endswith("qa serve: stopped")
    assert "Traceback" not in err and "Error" not in err


def test_a_port_in_use_is_a_one_line_error(index_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_qa("serve", "--port", str(port), "--index-dir", str(index_dir))
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: cannot listen on 127.0.0.1 port {port}: Address already in use"


def test_an_unknown_host_is_a_one_line_error(index_dir):
    done = run_qa("serve", "--host", "no-such-host.invalid", "--index-dir", str(index_dir))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("Error: cannot listen on no-such-host")


def test_a_bad_index_is_an_error_at_start_not_at_the_first_request(tmp_path):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "CURRENT").write_text("nonsense", encoding="ascii")
    (tmp_path / "index" / "gen-1-1").mkdir()
    done = run_qa("serve", "--port", "0", "--index-dir", str(tmp_path / "index"))
    assert done.returncode == 1 and done.stderr.startswith("Error: ") and len(done.stderr.splitlines()) == 1


def test_another_host_needs_a_token_it_prints(index_dir):
    server = Server("--host", "0.0.0.0", "--index-dir", str(index_dir))
    try:
        token = re.search(r"#token=([\w-]+)", server.first_lines[0]).group(1)
        assert len(token) >= 24
        status, body = request(server.url + "api/health")
        assert status == 401 and "Bearer" in body["error"]
        assert request(server.url + "api/health", token="wrong")[0] == 401
        assert request(server.url + "api/health", token=token)[0] == 200
    finally:
        server.stop()


def test_the_token_can_be_chosen_and_then_guards_loopback_too(index_dir):
    server = Server("--index-dir", str(index_dir), QA_SERVE_TOKEN="chosen-token-123")
    try:
        assert "#token=chosen-token-123" in server.first_lines[0]
        assert request(server.url + "api/sources")[0] == 401
        status, sources = request(server.url + "api/sources", token="chosen-token-123")
        assert status == 200 and len(sources) == 1
    finally:
        server.stop()


# --------------------------------------------------------------------------- qa index beside the server


def test_qa_index_beside_the_server_never_gives_a_client_an_error_or_a_mixed_answer(tmp_path):
    """Clients ask without pause while ``qa index --replace`` swaps the index between two
    corpora again and again, and one document of corpus A keeps changing (so the server
    updates the index itself, competing for the writer lock). Every answer must be a 200
    whose passages all come from one corpus, each quoting its document exactly."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "article.txt").write_bytes(BUNDLED_ARTICLE.read_bytes())
    changing = a / "log.txt"
    changing.write_text("Log entry 0: the drone count was checked.\n", encoding="utf-8")
    lines = (TESTS.parent / "qa" / "data" / "background_en.txt").read_text(encoding="utf-8").splitlines()
    (b / "notes.txt").write_text("Notes\n\n" + "\n\n".join(lines[:40]) + "\n", encoding="utf-8")
    fixed = {str(p): p.read_text(encoding="utf-8") for p in (a / "article.txt", b / "notes.txt")}
    index_dir = tmp_path / "index"
    assert run_qa("index", "--replace", str(a), "--index-dir", str(index_dir), "--model", FAKE_MODEL).returncode == 0

    server = Server("--index-dir", str(index_dir))
    stop = threading.Event()
    failures, answers, generations, rebuilds = [], [], set(), [0]

    def client(number: int) -> None:
        while not stop.is_set():
            status, body = request(server.url + "api/ask", {"question": "Which drones did Russia import? log entry",
                                                             "top_k": 5, "conversation": f"client-{number}"})
            if status != 200:
                failures.append((status, body))
                continue
            sources = {p["source"] for p in body["passages"]}
            if not (sources <= {str(a / "article.txt"), str(changing)} or sources <= {str(b / "notes.txt")}):
                failures.append(("mixed corpora", sources))
            for p in body["passages"]:
                if p["source"] in fixed and fixed[p["source"]][p["start"]:p["end"]] != p["text"]:
                    failures.append(("misquoted", p))
                if p["source"] == str(changing) and not re.fullmatch(r"Log entry \d+: the drone count was checked\.", p["text"]):
                    failures.append(("torn edit", p))
            answers.append(body)
            status, health = request(server.url + "api/health")
            if status != 200:
                failures.append((status, health))
            else:
                generations.add(health["generation"])

    def indexer() -> None:
        turn = 0
        while not stop.is_set():
            corpus = b if turn % 2 == 0 else a
            done = run_qa("index", "--replace", str(corpus), "--index-dir", str(index_dir), "--model", FAKE_MODEL)
            if done.returncode != 0:
                failures.append(("qa index failed", done.stderr))
            rebuilds[0] += 1
            turn += 1

    def editor() -> None:
        entry = 0
        while not stop.is_set():
            entry += 1
            changing.write_text(f"Log entry {entry}: the drone count was checked.\n", encoding="utf-8")
            time.sleep(0.3)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=indexer), threading.Thread(target=editor)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(12)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        out, err = server.stop()
    print(f"{len(answers)} answers during {rebuilds[0]} qa index runs; {len(generations)} generations seen")
    assert server.process.returncode == 0, err
    assert "Traceback" not in err
    assert not failures, failures[:5]
    assert rebuilds[0] >= 2, "qa index ran too few times for the test to mean anything"
    assert len(answers) >= 20 and len(generations) >= 3, (len(answers), generations)
    both = {frozenset(p["source"] for p in body["passages"]) >= {str(b / "notes.txt")} for body in answers}
    assert both == {True, False}, "the clients never saw both corpora"
