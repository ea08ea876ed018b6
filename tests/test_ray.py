"""qa index --ray: the embedding as a Ray Data job on a local Ray runtime gives the index a local run gives."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from qa.cli import app
from qa.embedder import PROBE_TEXT
from qa.indexer import RayOptions, update_index
from qa.store import read_index
from typer.testing import CliRunner

from conftest import FAKE_MODEL, FakeEmbedder

pytestmark = pytest.mark.slow  # a local Ray runtime takes 10-20 s to start on two cores


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """One local Ray runtime for the module (qa index --ray joins a runtime already started)."""
    ray = pytest.importorskip("ray")
    # Ray's actors can't import the tests' conftest: ship the fake model's class by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[FakeEmbedder.__module__])
    for attempt in range(3):  # Ray gives its raylet a fixed 30 s to start: a loaded 2-core machine can miss it
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            break
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception for the raylet timeout
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


def folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        sentences = [f"Document {i} sentence {j} tells of zebra {i * j} and penguin {j}." for j in range(40)]
        (docs / f"d{i}.txt").write_text("\n\n".join(" ".join(sentences[k : k + 4]) for k in range(0, 40, 4)),
                                        encoding="utf-8")
    return docs


def test_ray_index_equals_local_index(tmp_path, fake_model):
    docs = folder(tmp_path)
    local = update_index(tmp_path / "local", [docs], model=FAKE_MODEL)
    on_ray = update_index(tmp_path / "ray", [docs], model=FAKE_MODEL, ray=RayOptions(None, workers=2))
    assert on_ray.embedded == local.embedded > 256  # more than one batch
    a, b = read_index(tmp_path / "local"), read_index(tmp_path / "ray")
    assert [p.text for p in a.content.passages] == [p.text for p in b.content.passages]
    assert a.content.sentence_spans == b.content.sentence_spans
    np.testing.assert_allclose(a.content.vectors, b.content.vectors, atol=1e-6)
    np.testing.assert_allclose(a.content.sentence_vectors, b.content.sentence_vectors, atol=1e-6)
    assert fake_model.embedded  # the local run embedded here; the Ray run in its actors


def test_ray_batches_go_through_the_journal_so_a_killed_job_resumes(tmp_path, fake_model):
    docs = folder(tmp_path)

    def killed(done, total, step="embedding"):
        if step == "embedding":
            raise KeyboardInterrupt  # after the first batch came back and was journalled

    with pytest.raises(KeyboardInterrupt):
        update_index(tmp_path / "index", [docs], model=FAKE_MODEL, progress=killed, ray=RayOptions())
    assert list((tmp_path / "index").glob(".journal-*/batch-*.npz"))
    total = update_index(tmp_path / "whole", [docs], model=FAKE_MODEL).embedded
    fake_model.embedded.clear()
    report = update_index(tmp_path / "index", [docs], model=FAKE_MODEL)
    assert report.resumed >= 256 and report.embedded + report.resumed == total
    texts = [t for t in fake_model.embedded if t != PROBE_TEXT]
    assert len(texts) == report.embedded  # only what the killed job had not journalled


def test_index_ray_command(tmp_path, fake_model):
    docs = folder(tmp_path)
    result = CliRunner().invoke(app, ["index", "--model", FAKE_MODEL, "--ray", "local", "--ray-workers", "2", str(docs)])
    assert result.exit_code == 0, result.output
    assert len(read_index(tmp_path / "index").manifest.to_json()["documents"]) == 12
