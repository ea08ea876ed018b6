"""A read-only index whose documents changed still answers (issue 14, item 18).

It answers from the index as it is, with one line saying the index is out of date and
can't be updated here; once it is writable again the next question updates it.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile

import pytest
from typer.testing import CliRunner

from conftest import FAKE_MODEL
from qa.cli import app

runner = CliRunner()


def qa(*args, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


@pytest.fixture
def stale_index(fake_model, tmp_path):
    """An index of two notes, one of which changed since."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zebra.txt").write_text("Zebras\n\nThe zebra lives in Africa.\n", encoding="utf-8")
    (docs / "penguin.txt").write_text("Penguins\n\nPenguins live in Antarctica.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    assert qa("index", str(docs), "--model", FAKE_MODEL, "--index-dir", str(index_dir)).exit_code == 0
    (docs / "zebra.txt").write_text("Zebras\n\nThe zebra lives in Kenya now.\n", encoding="utf-8")
    return index_dir


def read_only(monkeypatch, index_dir, code=errno.EROFS):
    """Make files impossible to create in ``index_dir``, as a read-only mount does (root
    ignores permission bits, so a chmod can't show it in every test run)."""
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def refused(real):
        def call(*args, dir=None, **kwargs):
            if dir is not None and os.path.realpath(dir) == os.path.realpath(index_dir):
                raise OSError(code, os.strerror(code), str(dir))
            return real(*args, dir=dir, **kwargs)
        return call

    monkeypatch.setattr(tempfile, "mkstemp", refused(real_mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", refused(real_mkdtemp))


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_index_with_a_changed_document_answers_as_it_is(stale_index, monkeypatch, code):
    read_only(monkeypatch, stale_index, code)
    result = qa("ask", "--json", "where does the zebra live", "--index-dir", str(stale_index))
    assert result.exit_code in (0, 3), result.output
    assert "Africa" in json.loads(result.stdout)["passages"][0]["text"]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "out of date" in lines[0] and "zebra.txt changed" in lines[0]
    assert "can't be updated here" in lines[0] and os.strerror(code) in lines[0]
    assert "Error" not in result.stderr

    monkeypatch.undo()  # writable again: the next question updates it
    result = qa("ask", "--json", "where does the zebra live", "--index-dir", str(stale_index))
    assert "Kenya" in json.loads(result.stdout)["passages"][0]["text"]


def test_chat_on_a_read_only_stale_index_answers_every_question(stale_index, monkeypatch):
    read_only(monkeypatch, stale_index)
    result = qa("chat", "--index-dir", str(stale_index),
                input="where does the zebra live\nwhere do penguins live\n")
    assert result.exit_code == 0, result.output
    assert "Africa" in result.stdout and "Antarctica" in result.stdout
    assert result.stderr.count("can't be updated here") == 1, result.stderr  # said once, not before every question
    assert "Error" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_folder_without_write_permission_answers_as_it_is(stale_index):
    os.chmod(stale_index, 0o500)
    try:
        result = qa("ask", "--json", "where does the zebra live", "--index-dir", str(stale_index))
    finally:
        os.chmod(stale_index, 0o700)
    assert result.exit_code in (0, 3), result.output
    assert "Africa" in json.loads(result.stdout)["passages"][0]["text"]
    assert "can't be updated here" in result.stderr
