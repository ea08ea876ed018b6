"""Every --json output is strict JSON: no NaN, no infinities, valid UTF-8."""

from __future__ import annotations

import json
import os

from typer.testing import CliRunner

from qa.cli import REFUSED_EXIT  # qa ask exits 3 when nothing answers
from qa.cli import app

from conftest import FAKE_MODEL

runner = CliRunner()


def strict(line: str):
    def reject(name):
        raise AssertionError(f"{name} is not JSON: {line}")
    return json.loads(line, parse_constant=reject)


def test_ask_json_on_an_index_without_documents_is_strict(fake_model, tmp_path):
    document = tmp_path / "one.txt"
    document.write_text("Drones came from Iran.\n")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL, "--replace", str(document)]).exit_code == 0
    removed = runner.invoke(app, ["index", "--remove", str(document)])
    assert removed.exit_code == 0, removed.output
    result = runner.invoke(app, ["ask", "--json", "drones"])
    assert result.exit_code == REFUSED_EXIT, result.output
    answer = strict(result.stdout)
    assert answer["found"] is False and answer["passages"] == [] and answer["margin"] is None


def test_every_json_output_is_strict_and_keeps_a_non_utf8_name(fake_model, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"Drones came from Iran in the spring.\n")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL, "--replace", str(folder)]).exit_code == 0
    name = os.fsdecode(b"caf\xe9.txt")
    asked = strict(runner.invoke(app, ["ask", "--json", "drones from Iran"]).stdout)
    assert asked["passages"][0]["source"].endswith(name)
    sources = [strict(line) for line in runner.invoke(app, ["sources", "--json"]).stdout.splitlines()]
    assert [os.path.basename(row["source"]) for row in sources] == [name]
    questions = tmp_path / "eval.jsonl"
    questions.write_text('{"question": "drones from Iran", "answers": ["Drones"]}\n{"question": "x y", "answers": []}\n')
    result = runner.invoke(app, ["eval", "--json", "--details", str(questions)])
    assert result.exit_code == 0, result.output
    summary = strict(result.stdout)
    assert summary["n_answerable"] == 1
