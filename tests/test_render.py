"""Terminal rendering: highlights, evaluation rows, and user text shown verbatim."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from qa.cli import app
from qa.documents import Passage
from qa.evaluate import EvalItem, QuestionResult, metrics
from qa.render import passage_text, render_answer, render_eval, source_label
from qa.retriever import Answer, RetrievedPassage

from conftest import FAKE_MODEL

runner = CliRunner()
BOLD_YELLOW = "\x1b[1;33m"  # the highlight style, "bold yellow", in the 16-colour palette
RED = "\x1b[31m"


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=200, highlight=False)


def item(text: str, highlight: tuple[int, int] | None = None) -> RetrievedPassage:
    return RetrievedPassage(Passage(text, "/docs/notes.txt", 0, len(text), line=3), 0.8, highlight)


def rendered(passage: RetrievedPassage, found: bool = True) -> str:
    console = terminal()
    render_answer(console, Answer("q", found, [passage], 0.1))
    return console.file.getvalue()


TEXT = "Drones came first.\n  The  answer\n is   here. Then more."
SENTENCE = (TEXT.index("The"), TEXT.index("here.") + len("here."))


def test_highlighted_sentence_is_styled_in_a_terminal():
    out = rendered(item(TEXT, SENTENCE))
    assert f"{BOLD_YELLOW}The answer is here.\x1b[0m" in out
    assert "Drones came first." in out and "Then more." in out
    assert BOLD_YELLOW not in rendered(item(TEXT))


def test_highlighted_and_plain_passages_are_normalised_alike():
    text = "Cafe\u0301  au lait.\nThe re\u0301sume\u0301 is here. Fin."  # decomposed accents
    start = text.index("The")
    highlighted = passage_text(item(text, (start, start + len("The re\u0301sume\u0301 is here."))))
    plain = passage_text(item(text))
    assert highlighted.plain == plain.plain == "Caf\u00e9 au lait. The r\u00e9sum\u00e9 is here. Fin."
    [span] = highlighted.spans
    assert highlighted.plain[span.start:span.end] == "The r\u00e9sum\u00e9 is here."


def eval_rows(results: list[QuestionResult]) -> dict[str, str]:
    console = terminal()
    render_eval(console, metrics(results), results)
    lines = console.file.getvalue().splitlines()
    return {r.item.question: next(line for line in lines if r.item.question in line) for r in results}


def test_eval_details_mark_misses_red_including_a_refused_first_hit():
    results = [
        QuestionResult(EvalItem("hit and answered", ("x",)), 1, True),
        QuestionResult(EvalItem("hit but refused", ("x",)), 1, False),
        QuestionResult(EvalItem("second place", ("x",)), 2, True),
        QuestionResult(EvalItem("rightly refused", ()), None, False),
        QuestionResult(EvalItem("wrongly answered", ()), None, True),
    ]
    rows = eval_rows(results)
    assert RED not in rows["hit and answered"] and RED not in rows["rightly refused"]
    for missed in ("hit but refused", "second place", "wrongly answered"):
        assert RED in rows[missed], missed


def test_cli_sources_shows_markup_like_file_names_verbatim(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # whole paths on one line
    folder = tmp_path / "notes"
    (folder / "a[").mkdir(parents=True)
    (folder / "a[" / "b].txt").write_text("Zebras live in Africa.\n", encoding="utf-8")
    (folder / "[bold]x.txt").write_text("Penguins live in Antarctica.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    result = runner.invoke(app, ["index", str(folder), "--model", FAKE_MODEL, "--index-dir", str(index_dir)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["sources", "--index-dir", str(index_dir)])
    assert listed.exit_code == 0, listed.output
    assert "a[/b].txt" in listed.stdout and "[bold]x.txt" in listed.stdout


def test_cli_index_report_shows_a_markup_like_directory_verbatim(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    index_dir = tmp_path / "idx[" / "b][bold]"
    result = runner.invoke(app, ["index", "--model", FAKE_MODEL, "--index-dir", str(index_dir)])
    assert result.exit_code == 0, result.output
    assert f"into {index_dir} " in result.stdout
    again = runner.invoke(app, ["index", "--index-dir", str(index_dir)])
    assert again.exit_code == 0, again.output
    assert f"The index in {index_dir} is up to date" in again.stdout


def titled(title: str | None, **where) -> RetrievedPassage:
    return RetrievedPassage(Passage("Body.", "/docs/000_abc.txt", 0, 5, title, **where), 0.8, None)


def test_answers_name_the_document_by_its_title_then_its_file():
    assert source_label(titled("Rusia Akan Membeli Roket", line=17)) == "Rusia Akan Membeli Roket (000_abc.txt, line 17)"
    assert source_label(titled(None, page=3)) == "000_abc.txt, page 3"
    assert source_label(titled("## Wifi  setup", line=1)) == "Wifi setup (000_abc.txt, line 1)"
    long = source_label(titled("word " * 40, line=2))
    assert long.endswith("\u2026 (000_abc.txt, line 2)") and len(long) < 110


def test_cli_answer_shows_the_bundled_article_title(fake_model):
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    result = runner.invoke(app, ["ask", "Mohajer-6 Shahed drone Iran"], terminal_width=300)
    header = result.stdout.splitlines()[0]
    assert "Rusia Akan Membeli Jutaan Roket-Peluru Artileri dari Korea Utara (000_007ef922b28a0a10.txt, line" in header
