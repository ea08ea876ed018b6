"""The product end to end with the real models: the default (EmbeddingGemma, on its ONNX
engine) and e5-small, each built on first use from its PyPI packages."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from qa.cli import REFUSED_EXIT
from qa.cli import app

pytestmark = [pytest.mark.model, pytest.mark.slow]  # slow: indexes the article with the real model first
runner = CliRunner()

DRONES = "Mohajer-6"
INVASION = "24 Februari"
USES = "perang elektronik"


@pytest.fixture(scope="module", params=["default", "e5-small"])
def index_dir(request, tmp_path_factory):
    """One index of the bundled article per model (the default, then e5-small), shared by
    this module: every test runs against both."""
    path = tmp_path_factory.mktemp("e2e") / "index"
    model = [] if request.param == "default" else ["--model", request.param]
    result = runner.invoke(app, ["index", "--index-dir", str(path), *model])
    assert result.exit_code == 0, result.output
    assert "instead" not in result.output  # EmbeddingGemma really built, no fallback to e5-small
    return path


def ask(index_dir, question, *extra):
    result = runner.invoke(app, ["ask", "--json", "--index-dir", str(index_dir), *extra, question])
    data = json.loads(result.stdout)
    assert result.exit_code == (0 if data["found"] else REFUSED_EXIT), result.output  # 3: nothing answers
    return data


@pytest.mark.parametrize(
    "question, expected",
    [
        ("Which drones did Russia import?", DRONES),
        ("Kapan Rusia menginvasi Ukraina?", INVASION),
        ("Quels drones la Russie a-t-elle importés ?", DRONES),  # French
        ("¿Qué drones importó Rusia?", DRONES),  # Spanish
        ("Welche Drohnen hat Russland aus dem Iran importiert?", DRONES),  # German
        ("When did Russia invade Ukraine?", INVASION),
        ("What will the Iranian drones be used for?", USES),
        ("Who told Kim Jong-Un that bilateral relations would expand?", "Kim Jong-Un"),
    ],
)
def test_questions_in_many_languages_find_the_answering_passage(index_dir, question, expected):
    data = ask(index_dir, question)
    assert data["found"] is True, data
    assert expected in data["passages"][0]["text"]


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "How do I bake sourdough bread?", "Siapa pemenang Piala Dunia 2018?"],
)
def test_questions_the_article_cannot_answer_are_refused(index_dir, question):
    assert ask(index_dir, question)["found"] is False


def test_debris_is_never_an_answer(index_dir):
    data = ask(index_dir, "How many views does the article have?", "--top-k", "20")
    assert all("views" not in p["text"] for p in data["passages"])


def test_chat_subprocess_answers_piped_questions(index_dir):
    env = {**os.environ, "QA_INDEX_DIR": str(index_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "qa.cli", "chat"],
        input="Which drones did Russia import?\nKapan Rusia menginvasi Ukraina?\n",
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("Q: Kapan")
    assert DRONES in first and INVASION in second
    assert "\x1b[" not in proc.stdout


def test_answers_carry_a_highlight_inside_the_passage(index_dir):
    data = ask(index_dir, "What will the Iranian drones be used for?")
    top = data["passages"][0]
    span = top["text"][top["highlight"]["start"]:top["highlight"]["end"]]
    assert "perang elektronik" in span and not span.startswith("Rusia, menurut")


def test_chat_follow_up_question_uses_the_conversation(index_dir):
    result = runner.invoke(
        app, ["chat", "--index-dir", str(index_dir)],
        input="Which drones did Russia import?\nWhat will they be used for?\n",
    )
    assert result.exit_code == 0, result.output
    follow_up = result.stdout.split("Q: What will they be used for?")[1]
    assert "follow-up" in follow_up and "perang elektronik" in follow_up and "No answer" not in follow_up


def test_follow_up_is_answered_by_its_own_sentence_not_the_topic_s(index_dir):
    # The topic alone gets the same passage, highlighted at the Mohajer-6 sentence; only
    # reading the follow-up itself lands on what the drones are for.
    from qa.embedder import load_query_embedder
    from qa.followup import Conversation
    from qa.retriever import Retriever
    from qa.store import read_index

    snapshot = read_index(index_dir)
    retriever = Retriever(snapshot, load_query_embedder(snapshot.manifest.model_name))
    conversation = Conversation()
    conversation.ask(retriever, "Which drones did Russia import?", 1)
    answer = conversation.ask(retriever, "What will they be used for?", 1)
    top = answer.passages[0]
    start, end = top.highlight
    assert answer.found and answer.context == "Which drones did Russia import?"
    assert "perang elektronik" in top.passage.text[start:end]
