import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from qa.chat import ChatCommand, ChatSession, parse_chat_line
from qa.cli import app

from conftest import FAKE_MODEL

runner = CliRunner()


@pytest.mark.parametrize(
    "line, expected",
    [
        ("", ChatCommand("empty")),
        ("   \t", ChatCommand("empty")),
        ("exit", ChatCommand("exit")),
        ("  QUIT ", ChatCommand("exit")),
        ("/help", ChatCommand("help")),
        ("/sources", ChatCommand("sources")),
        ("/reset", ChatCommand("reset")),
        (" /RESET ", ChatCommand("reset")),
        ("/nope now", ChatCommand("unknown", "/nope")),
        ("  Which drones did Russia import? ", ChatCommand("question", "Which drones did Russia import?")),
        ("exit the market?", ChatCommand("question", "exit the market?")),
        ("clear", ChatCommand("clear")),
        ("/Clear", ChatCommand("clear")),
        ("/sources /reset", ChatCommand("sources")),
        ("clear the table?", ChatCommand("question", "clear the table?")),
    ],
)
def test_parse_chat_line(line, expected):
    assert parse_chat_line(line) == expected


def no_retriever():
    raise AssertionError("a command must not load the retriever")


def handled(*lines: str) -> str:
    console = Console(file=io.StringIO(), width=200, highlight=False)
    session = ChatSession(no_retriever, console)
    for line in lines:
        assert session.handle(line)
    return console.file.getvalue()


@pytest.mark.parametrize("command", ["/[/x]", "/[red]x", "/[bold]", "/a[/]"])
def test_unknown_command_is_shown_verbatim(command):
    assert handled(f"{command} more") == f"Unknown command {command}; type /help for the list.\n"


def test_reset_is_a_known_command():
    out = handled("/reset")
    assert "Conversation forgotten." in out and "Unknown command" not in out


def test_reset_forgets_the_last_answer(fake_model):
    assert runner.invoke(app, ["index", "--model", FAKE_MODEL]).exit_code == 0
    result = runner.invoke(app, ["chat"], input="Mohajer-6 drone Iran\n/sources\n/reset\n/sources\n")
    assert result.exit_code == 0, result.output
    before, after = result.stdout.split("Conversation forgotten.")
    assert "[5]" in before and "No question asked yet" not in before
    assert "No question asked yet" in after and "[1]" not in after


def test_tab_completion_offers_the_matching_commands():
    from qa.chat import complete_command

    assert complete_command("/so", 0) == "/sources" and complete_command("/so", 1) is None
    assert complete_command("/re", 0) == "/reset"
    assert complete_command("drones", 0) is None


def test_read_entry_joins_lines_ending_in_a_backslash():
    from qa.chat import read_entry

    lines = iter(["Which drones \\", "did Russia \\  ", "import?", "next"])
    assert read_entry(lambda prompt: next(lines)) == "Which drones \ndid Russia \nimport?"
