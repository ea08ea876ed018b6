"""qa index --ray without Ray running: how the command line reads --ray, and Ray missing or unreachable."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qa.cli import app, optional_ray_address
from qa.indexer import IndexingError, RayOptions, update_index

from conftest import FAKE_MODEL


@pytest.mark.parametrize("args, expected", [
    (["index", "--ray"], ["index", "--ray=local"]),
    (["index", "--ray", "docs/"], ["index", "--ray=local", "docs/"]),
    (["index", "--ray", "--verbose"], ["index", "--ray=local", "--verbose"]),
    (["index", "--ray", "auto", "docs/"], ["index", "--ray", "auto", "docs/"]),
    (["index", "--ray", "ray://head:10001"], ["index", "--ray", "ray://head:10001"]),
    (["index", "--ray", "10.0.0.5:6379"], ["index", "--ray", "10.0.0.5:6379"]),
    (["index", "--", "--ray"], ["index", "--", "--ray"]),
])
def test_ray_address_is_optional(args, expected):
    assert optional_ray_address(args) == expected


def test_index_ray_without_ray_installed_names_the_extra(monkeypatch, fake_model, tmp_path):
    monkeypatch.setattr("qa.ray_embed.ray_installed", lambda: False)
    result = CliRunner().invoke(app, ["index", "--model", FAKE_MODEL, "--ray=local"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: qa index --ray needs Ray, which is not installed: pip install 'qa[ray]'"]
    assert not (tmp_path / "index").exists() or not list((tmp_path / "index").glob("gen-*"))


@pytest.mark.slow  # waits for a Ray cluster that is not there: seconds
def test_unreachable_ray_cluster_is_one_line(tmp_path, fake_model):
    pytest.importorskip("ray")
    doc = tmp_path / "doc.txt"
    doc.write_text("The zebra lives in Africa.\n", encoding="utf-8")
    with pytest.raises(IndexingError, match=r"^can't reach the Ray cluster at 'ray://127.0.0.1:1': "):
        update_index(tmp_path / "index", [doc], model=FAKE_MODEL, ray=RayOptions("ray://127.0.0.1:1"))
