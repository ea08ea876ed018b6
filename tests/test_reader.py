"""The reader seam: one function makes every answer, and a registered reader reaches every front end."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from qa import reader as reader_module
from qa.cli import app
from qa.reader import PassageReader, answer_question, load_reader, register_reader

from conftest import FAKE_MODEL

runner = CliRunner()


class ShoutingReader:
    """A reader that writes an answer: the best passage's first word, upper case."""

    name = "shout"

    def read(self, answer):
        written = answer.passages[0].passage.text.split()[0].upper() if answer.passages else None
        return replace(answer, written=written)


@pytest.fixture
def shouting(monkeypatch):
    monkeypatch.setattr(reader_module, "_READERS", dict(reader_module._READERS))
    register_reader("shout", ShoutingReader)
    monkeypatch.setattr(reader_module, "DEFAULT_READER", "shout")


@pytest.fixture
def indexed(fake_model):
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0


def test_the_default_reader_is_the_identity():
    assert isinstance(load_reader(), PassageReader)
    sentinel = object()
    assert PassageReader().read(sentinel) is sentinel
    with pytest.raises(KeyError, match="unknown reader 'nope'"):
        load_reader("nope")


def test_ask_json_has_no_written_answer_with_todays_reader(indexed):
    data = json.loads(runner.invoke(app, ["ask", "--json", "Mohajer-6 Shahed drone Iran"]).stdout)
    assert "answer" not in data


def test_a_registered_reader_reaches_ask_chat_and_eval(indexed, shouting, tmp_path):
    data = json.loads(runner.invoke(app, ["ask", "--json", "Mohajer-6 Shahed drone Iran"]).stdout)
    assert data["answer"] == data["passages"][0]["text"].split()[0].upper()

    result = runner.invoke(app, ["chat"], input="Mohajer-6 Shahed drone Iran\n")
    assert result.exit_code == 0 and f"\n{data['answer']}\n" in result.stdout  # shown above the passage

    evaluation = tmp_path / "set.jsonl"
    evaluation.write_text('{"question": "Mohajer-6 Shahed drone Iran", "answers": ["Mohajer-6"]}\n')
    assert runner.invoke(app, ["eval", str(evaluation), "--json"]).exit_code == 0


def test_answer_question_with_a_conversation_reads_follow_ups(fake_model, indexed):
    from qa.followup import Conversation
    from qa.pipeline import open_retriever
    from qa.paths import default_index_dir
    import os
    from pathlib import Path

    index_dir = Path(os.environ["QA_INDEX_DIR"])
    retriever = open_retriever(index_dir, None, default_index_dir(), lambda m: None)
    conversation = Conversation()
    first = answer_question(retriever, "Mohajer-6 Shahed drone Iran", 1, conversation)
    assert first.found and conversation.topic
