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


def test_metrics_without_answerable_questions_are_none_not_zero():
    m = metrics([QuestionResult(EvalItem("c", ()), None, False)])
    assert m["hit@1"] is None and m["hit@5"] is None and m["mrr"] is None
    assert m["n_unanswerable"] == 1 and m["no_answer_correct"] == 1


def test_metrics_of_total_failure_are_zero():
    m = metrics([QuestionResult(EvalItem("a", ("x",)), None, False)])
    assert (m["hit@1"], m["hit@5"], m["mrr"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "content, message",
    [("", "no questions"), ("{not json", "line 1"), ('{"question": "q"}', "line 1: missing"),
     ('{"question": "", "answers": []}', "question is empty"), ('{"question": "?", "answers": []}', "no words"),
     ('{"question": "q", "answers": "x"}', "list")],
)
def test_bad_eval_files(tmp_path, content, message):
    path = tmp_path / "set.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalSetError, match=message):
        read_eval_set(path)


def test_eval_set_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "q", "answers": ["a"]}\n', encoding="utf-8-sig")
    assert read_eval_set(path) == [EvalItem("q", ("a",))]


def test_eval_set_lines_are_split_at_newlines_only(tmp_path):
    """JSON allows U+2028 and U+0085 unescaped in strings; they don't end a line."""
    path = tmp_path / "set.jsonl"
    rows = [{"question": "first\u2028part", "answers": ["x\x85y"]}, {"question": "q2", "answers": []}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert [(i.question, i.answers) for i in read_eval_set(path)] == [("first\u2028part", ("x\x85y",)), ("q2", ())]


GOOD_LINE = '{"question": "Mohajer-6 drone", "answers": ["Mohajer-6"]}'


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and all(f in lines[0] for f in fragments), lines[0]


@pytest.mark.parametrize(
    "line, fragments",
    [
        ('{"id": 3, "question": "q", "answers": []}', ['"id" must be a string']),
        ('{"id": 0, "question": "q", "answers": []}', ['"id" must be a string']),
        ('{"question": "\\u0000", "answers": []}', ["question is empty"]),
        ('{"question": " \\u0007\\t\\u001f ", "answers": ["x"]}', ["question is empty"]),
        ('{"question": 5, "answers": []}', ['"question" must be a string']),
        ('["q", ["a"]]', ["JSON object"]),
        ("3", ["JSON object"]),
        ('"question"', ["JSON object"]),
        ("[" * 100_000, []),
    ],
)
def test_bad_eval_line_is_a_one_line_error_naming_the_line(fake_model, tmp_path, line, fragments):
    path = tmp_path / "set.jsonl"
    path.write_text(f"{GOOD_LINE}\n\n{line}\n{GOOD_LINE}\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "--details", str(path)])
    assert_one_line_error(result, "line 3", *fragments)


def test_eval_command_reads_a_file_with_a_byte_order_mark(fake_model, tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(GOOD_LINE + "\n", encoding="utf-8-sig")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    result = runner.invoke(app, ["eval", "--json", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_answerable"] == 1


def test_eval_without_answerable_questions_prints_no_scores(fake_model, tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"question": "zebra giraffe savanna", "answers": []}\n', encoding="utf-8")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    data = json.loads(runner.invoke(app, ["eval", "--json", str(path)]).stdout)
    assert data["hit@1"] is None and data["hit@5"] is None and data["mrr"] is None
    result = runner.invoke(app, ["eval", str(path)])
    assert result.exit_code == 0, result.output
    assert "Hit@1 -   Hit@5 -   MRR -" in result.stdout and "0.000" not in result.stdout


def test_eval_details_show_markup_like_text_verbatim(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # no wrapping inside the table's cells
    path = tmp_path / "set.jsonl"
    rows = [{"id": "[i]one", "question": "Mohajer-6 [bold]this[/bold] drone", "answers": ["Mohajer-6"]},
            {"id": "two[/i]", "question": "zebra [/b] savanna", "answers": []},
            {"question": "giraffe [/] [red]x", "answers": []}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    result = runner.invoke(app, ["eval", "--details", str(path)])
    assert result.exit_code == 0, result.output
    for text in ("[i]one", "Mohajer-6 [bold]this[/bold] drone", "two[/i]", "zebra [/b] savanna", "giraffe [/] [red]x"):
        assert text in result.stdout


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


@pytest.mark.parametrize("make, message", [
    (lambda path: path.mkdir(), "is a folder: give a JSONL file"),
    (lambda path: path.write_bytes(b'{"question": "caf\xe9", "answers": []}\n'), "cannot read as UTF-8 text (invalid"),
])
def test_eval_file_that_is_not_utf8_text_is_one_line_error(fake_model, tmp_path, make, message):
    path = tmp_path / "set.jsonl"
    make(path)
    result = runner.invoke(app, ["eval", str(path)])
    assert result.exit_code != 0 and result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_eval_missing_file_is_one_line_error(fake_model, tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "none.jsonl")])
    assert result.exit_code != 0 and result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
