"""Every help text reads as written: no markup swallowed, ``-h`` everywhere."""

import inspect
import re

import click
import pytest
import typer
from typer.testing import CliRunner

from qa.cli import app

runner = CliRunner()
COMMANDS = ["ask", "chat", "index", "sources", "eval"]


def words(text: str) -> str:
    return " ".join(text.split())


def command_help(name: str) -> tuple[str, click.Command]:
    group = typer.main.get_command(app)
    command = group.commands[name]
    result = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.stdout, command


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_docstring_and_every_option_help_verbatim(name):
    shown, command = command_help(name)
    flat = words(shown)
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        assert words(paragraph) in flat, paragraph
    for param in command.params:
        if getattr(param, "help", None):
            assert words(param.help) in flat, param.help


@pytest.mark.parametrize("name", COMMANDS)
def test_brackets_survive(name):
    shown, _ = command_help(name)
    assert "<bool>" not in shown
    assert " . " not in shown  # "Index directory . [env var...]": a swallowed [default: ...]
    if name != "sources":
        assert "[default: the index's model" in words(shown)


def test_eval_help_keeps_the_answer_list():
    shown, _ = command_help("eval")
    assert '{"question": str, "answers": [str, ...]} a line.' in words(shown)


@pytest.mark.parametrize("args", [[], *([name] for name in COMMANDS)])
def test_dash_h_is_help(args):
    short = runner.invoke(app, [*args, "-h"], terminal_width=200)
    long = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert short.exit_code == 0, short.output
    assert short.stdout == long.stdout
    assert re.search(r"-h, --help", short.stdout)


def test_completion_is_offered():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert "--install-completion" in result.stdout
