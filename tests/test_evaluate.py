import json

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.documents import Passage
from qa.evaluate import EvalItem, EvalSetError, QuestionResult, is_hit, judge, metrics, read_eval_set
from qa.retriever import Answer, RetrievedPassage

from conftest import FAKE_MODEL

runner = CliRunner()


def answer(found, *texts):
    return Answer("q", found, [RetrievedPassage(Passage(t, "s", 0, len(t)), 1.0) for t in texts], 0.0)


def test_is_hit_folds_case_and_spacing():
    assert is_hit("Drone  Mohajer-6 dan seri Shahed", ["mohajer-6 DAN"])
    assert not is_hit("Drone Shahed", ["Mohajer-6"])


def test_judge_and_metrics():
    a = EvalItem("a", ("x",))
    b = EvalItem("b", ("y",))
    none = EvalItem("c", ())
    results = [
        judge(a, answer(True, "x here", "y")),
        judge(b, answer(False, "nothing", "nope", "y there")),
        judge(none, answer(False, "z")),
        judge(none, answer(True, "z")),
    ]
    assert [r.rank for r in results] == [1, 3, None, None]
    assert metrics(results) == {
        "hit@1": 0.5, "hit@5": 1.0, "mrr": round((1 + 1 / 3) / 2, 4),
        "n_answerable": 2, "n_unanswerable": 2, "no_answer_correct": 1, "false_refusals": 1,
    }


def test_metrics_without_answerable_questions():
    m = metrics([QuestionResult(EvalItem("c", ()), None, False, "")])
    assert m["hit@1"] == 0.0 and m["n_unanswerable"] == 1 and m["no_answer_correct"] == 1


@pytest.mark.parametrize(
    "content, message",
    [("", "no questions"), ("{not json", "line 1"), ('{"question": "q"}', "line 1: missing"),
     ('{"question": "", "answers": []}', "empty question"), ('{"question": "q", "answers": "x"}', "list")],
)
def test_bad_eval_files(tmp_path, content, message):
    path = tmp_path / "set.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalSetError, match=message):
        read_eval_set(path)


def test_eval_command_json_and_details(fake_model, tmp_path):
    path = tmp_path / "set.jsonl"
    rows = [{"id": "1", "question": "Mohajer-6 Shahed drone Iran", "answers": ["Mohajer-6"]},
            {"question": "zebra giraffe savanna", "answers": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    result = runner.invoke(app, ["eval", "--json", "--details", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("hit@1", "hit@5", "mrr", "n_answerable", "n_unanswerable", "no_answer_correct", "false_refusals"):
        assert key in data
    assert data["hit@1"] == 1.0 and data["n_answerable"] == 1 and data["n_unanswerable"] == 1
    assert [d["id"] for d in data["details"]] == ["1", None]
    text = runner.invoke(app, ["eval", "--details", str(path)])
    assert "Hit@1 1.000" in text.stdout and "zebra giraffe savanna" in text.stdout


def test_eval_missing_file_is_one_line_error(fake_model, tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "none.jsonl")])
    assert result.exit_code != 0 and result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
