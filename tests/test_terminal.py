"""Nothing a document or a file name holds reaches the terminal as a command (issue: escape injection)."""

import io
import json
import re

import pytest
from rich.text import Text
from typer.testing import CliRunner

from qa.cli import REFUSED_EXIT  # qa ask exits 3 when nothing answers
from qa.cli import app
from qa.render import make_console
from qa.terminal import SafeConsole, json_safe, one_line, printable

from conftest import FAKE_MODEL

runner = CliRunner()
HOSTILE = "Drones \x1b]0;pwned\x07 came \x1b[2J first \x9b31m and \x7f left."
SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_printable_escapes_controls_but_keeps_lines_and_tabs():
    assert printable("a\x1b[2Jb\tc\nd\x9be\x07") == "a\\x1b[2Jb\tc\nd\\x9be\\x07"
    assert one_line("evil\nname\t.txt\r") == "evil\\nname\\t.txt\\r"
    assert one_line("caf\udce9.txt") == "caf\\xe9.txt"  # a byte of a name that isn't UTF-8


def test_json_safe_keeps_the_true_text():
    encoded = json_safe(json.dumps({"t": HOSTILE}, ensure_ascii=False))
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", encoded)
    assert json.loads(encoded)["t"] == HOSTILE


def test_a_terminal_gets_colours_but_no_control_character_of_the_text():
    console = SafeConsole(file=io.StringIO(), force_terminal=True, color_system="standard", width=200)
    console.print(Text(HOSTILE, style="bold"))
    shown = SGR.sub("", console.file.getvalue())
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown), repr(shown)
    assert "\\x1b]0;pwned" in shown and "\\x1b[2J" in shown and "\\x9b31m" in shown
    assert "\x1b[1m" in console.file.getvalue()  # the style still is one


def test_a_clear_screen_asked_for_by_qa_still_clears():
    console = SafeConsole(file=io.StringIO(), force_terminal=True, width=80)
    console.clear()
    assert "\x1b[2J" in console.file.getvalue()


def test_make_console_is_safe():
    assert isinstance(make_console(), SafeConsole)


@pytest.fixture
def hostile_library(fake_model, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "evil\nname [1] fake.txt").write_text(HOSTILE + "\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    result = runner.invoke(app, ["index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)])
    assert result.exit_code == 0, result.output
    return index_dir


def test_ask_shows_hostile_text_and_names_escaped(hostile_library):
    result = runner.invoke(app, ["ask", "drones came first", "--index-dir", str(hostile_library)])
    assert result.exit_code == 0, result.output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", result.stdout), repr(result.stdout)
    header = next(line for line in result.stdout.splitlines() if line.startswith("[1]"))
    assert "evil\\nname [1] fake.txt, line 1" in header  # one line: the newline can't forge a header
    assert "\\x1b]0;pwned" in result.stdout and "\\x1b[2J" in result.stdout


def test_ask_json_keeps_the_true_text(hostile_library):
    result = runner.invoke(app, ["ask", "--json", "drones came first", "--index-dir", str(hostile_library)])
    data = strict_json(result.stdout)
    assert data["passages"][0]["text"].startswith("Drones \x1b]0;pwned\x07 came")
    assert data["passages"][0]["source"].endswith("evil\nname [1] fake.txt")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", result.stdout.rstrip("\n"))


def test_sources_lines_are_not_forged_by_a_newline_in_a_name(hostile_library):
    result = runner.invoke(app, ["sources", "--index-dir", str(hostile_library)])
    assert len(result.stdout.splitlines()) == 1 and "evil\\nname" in result.stdout
    for line in runner.invoke(app, ["sources", "--json", "--index-dir", str(hostile_library)]).stdout.splitlines():
        assert strict_json(line)["source"].endswith("evil\nname [1] fake.txt")


def test_an_error_naming_a_hostile_path_stays_one_line(fake_model, tmp_path):
    result = runner.invoke(app, ["index", str(tmp_path / "no\x1b[2Jsuch\nfile.txt"), "--model", FAKE_MODEL,
                                 "--index-dir", str(tmp_path / "index")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no\\x1b[2Jsuch\\nfile.txt" in lines[0]


def test_json_of_an_index_without_documents_is_strict(fake_model, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Kangaroos live in Australia.\n")
    index_dir = tmp_path / "index"
    assert runner.invoke(app, ["index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)]).exit_code == 0
    assert runner.invoke(app, ["index", "--remove", str(folder), "--index-dir", str(index_dir)]).exit_code == 0
    result = runner.invoke(app, ["ask", "--json", "kangaroos", "--index-dir", str(index_dir)])
    assert result.exit_code == REFUSED_EXIT, result.output
    data = strict_json(result.stdout)
    assert data["found"] is False and data["passages"] == [] and data["margin"] is None
    evaluation = tmp_path / "set.jsonl"
    evaluation.write_text('{"question": "where do kangaroos live", "answers": ["Australia"]}\n')
    result = runner.invoke(app, ["eval", str(evaluation), "--json", "--index-dir", str(index_dir)])
    assert result.exit_code == 0, result.output
    strict_json(result.stdout)
