import pytest

from qa.chat import ChatCommand, parse_chat_line


@pytest.mark.parametrize(
    "line, expected",
    [
        ("", ChatCommand("empty")),
        ("   \t", ChatCommand("empty")),
        ("exit", ChatCommand("exit")),
        ("  QUIT ", ChatCommand("exit")),
        ("/help", ChatCommand("help")),
        ("/sources", ChatCommand("sources")),
        ("/nope now", ChatCommand("unknown", "/nope")),
        ("  Which drones did Russia import? ", ChatCommand("question", "Which drones did Russia import?")),
        ("exit the market?", ChatCommand("question", "exit the market?")),
    ],
)
def test_parse_chat_line(line, expected):
    assert parse_chat_line(line) == expected
