"""Nothing a document, a file name or an index holds reaches the terminal as a control sequence."""

from __future__ import annotations

import io
import json
import os

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qa.cli import app
from qa.documents import Passage
from qa.indexer import IndexReport
from qa.render import render_answer, render_index_report, render_sources_table
from qa.retriever import Answer, RetrievedPassage
from qa.terminal import terminal_line, terminal_text

from conftest import FAKE_MODEL

runner = CliRunner()
HOSTILE = "Title\x1b]0;pwned\x07 clear\x1b[2J csi\x9b31m cr\rback bell\x07 del\x7f nul\x00 end"
# what a terminal would act on: ESC, the one-byte CSI, BEL, CR, NUL, DEL (rich's own colours
# are ESC too, so tests render without colour)
ACTIVE = ("\x1b", "\x9b", "\x07", "\r", "\x00", "\x7f")


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system=None, width=300, highlight=False)


def test_terminal_text_escapes_controls_and_keeps_line_feeds_and_tabs():
    assert terminal_text("a\x1b[2Jb\n\tc\x9b") == "a\\x1b[2Jb\n\tc\\x9b"
    assert terminal_text("plain text, ünïcode 字") == "plain text, ünïcode 字"


def test_terminal_line_also_escapes_line_feeds_and_shows_non_utf8_bytes():
    name = os.fsdecode(b"caf\xe9\n[1] forged.txt, line 1")
    assert terminal_line(name) == "caf\\xe9\\n[1] forged.txt, line 1"
    assert terminal_line("\ud800") == "\\ud800"


def test_an_answer_from_a_hostile_document_prints_no_control_sequence():
    passage = Passage(HOSTILE, "/docs/evil\x1b[2J\nname.txt", 0, len(HOSTILE), line=1)
    out = console()
    render_answer(out, Answer("q\x1b[2J", True, [RetrievedPassage(passage, 0.9, (0, 5))], 0.2, context="c\x1b]0;t\x07"))
    text = out.file.getvalue()
    assert not any(code in text for code in ACTIVE), repr(text)
    assert "\\x1b]0;pwned\\x07" in text and "evil\\x1b[2J\\nname.txt, line 1" in text
    assert text.count("\n[") == 1 and text.startswith("(read as a follow-up to: c\\x1b]0;t\\x07)\n[1] ")


def test_index_report_and_sources_escape_file_names():
    report = IndexReport(directory="/idx\x1b[2J")
    from qa.discover import Skipped

    report.skipped.append(Skipped("/docs/a\x1b]0;x\x07.bin", "unsupported format '.bin'"))
    out, err = console(), console()
    render_index_report(out, err, report, verbose=True)
    text = out.file.getvalue() + err.file.getvalue()
    assert not any(code in text for code in ACTIVE), repr(text)
    for terminal in (True, False):
        out = Console(file=io.StringIO(), force_terminal=terminal, color_system=None, width=300)
        render_sources_table(out, [{"source": "/docs/a\x1b[2J\nb.txt", "kind": "text", "passages": 1}])
        text = out.file.getvalue()
        assert not any(code in text for code in ACTIVE) and "a\\x1b[2J" in text, repr(text)


def test_cli_answer_escapes_a_hostile_document_but_json_keeps_it(fake_model, tmp_path):
    document = tmp_path / "evil\x1b[2J.txt"
    document.write_text("Drones from Iran\x1b]0;pwned\x07 arrived\x1b[2J in the spring of that year.\n")
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL, "--replace", str(document)]).exit_code == 0
    result = runner.invoke(app, ["ask", "drones from Iran"])
    assert result.exit_code == 0, result.output
    assert not any(code in result.stdout for code in ACTIVE), repr(result.stdout)
    assert "evil\\x1b[2J.txt" in result.stdout and "\\x1b]0;pwned\\x07" in result.stdout
    as_json = runner.invoke(app, ["ask", "--json", "drones from Iran"])
    passage = json.loads(as_json.stdout)["passages"][0]
    assert "\x1b]0;pwned\x07" in passage["text"] and passage["source"].endswith("evil\x1b[2J.txt")
