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


@pytest.mark.parametrize("line", ["/sources /reset", "/RESET now", "/help me"])
def test_a_known_command_with_more_text_is_not_called_unknown(line):
    out = handled(line)
    assert "Unknown command" not in out
    assert out == f"{line.split()[0]} takes nothing after it; type /help for the list.\n"


def test_an_unknown_command_with_escape_sequences_is_shown_escaped():
    out = handled("/\x1b]0;owned\x07 now")
    assert "\x1b" not in out and "\x07" not in out
    assert out == "Unknown command /\\x1b]0;owned\\x07; type /help for the list.\n"
