"""qa log: past questions and answers, kept privately in SQLite, and off when asked."""

import json
import os
import stat

from typer.testing import CliRunner

from qa.cli import app
from qa.log import log_path

from conftest import FAKE_MODEL

runner = CliRunner()


def indexed():
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0


def test_asked_and_chatted_questions_are_logged_oldest_first(fake_model):
    indexed()
    runner.invoke(app, ["ask", "Mohajer-6 Shahed drone Iran"])
    runner.invoke(app, ["chat"], input="zzzz qqqq\n")
    lines = runner.invoke(app, ["log", "--json"]).stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["question"] for e in entries] == ["Mohajer-6 Shahed drone Iran", "zzzz qqqq"]
    assert entries[0]["found"] is True and "Mohajer-6" in entries[0]["passages"][0]["text"]
    assert entries[1]["found"] is False and entries[1]["asked"] and entries[1]["index_dir"]
    text = runner.invoke(app, ["log"]).stdout
    assert "Mohajer-6 Shahed drone Iran" in text and "no answer" in text
    assert [json.loads(x)["question"] for x in runner.invoke(app, ["log", "-n", "1", "--json"]).stdout.splitlines()] == ["zzzz qqqq"]


def test_the_log_is_private(fake_model):
    indexed()
    runner.invoke(app, ["ask", "Mohajer-6"])
    assert stat.S_IMODE(os.stat(log_path()).st_mode) == 0o600


def test_the_log_can_be_turned_off(fake_model, monkeypatch):
    indexed()
    monkeypatch.setenv("QA_LOG", "0")
    runner.invoke(app, ["ask", "Mohajer-6"])
    assert not log_path().exists()
    assert "the log is off" in runner.invoke(app, ["log"]).stdout


def test_an_unreadable_log_is_a_one_line_error(fake_model):
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database" * 100)
    result = runner.invoke(app, ["log"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot read the log")
    assert len(result.stderr.strip().splitlines()) == 1
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    assert runner.invoke(app, ["ask", "Mohajer-6 Shahed drone Iran"]).exit_code == 0  # a broken log never stops an answer
