"""The live status line of long commands: shown at once in a terminal, never through a pipe."""

import io

from rich.console import Console

from qa.cli import Status


def status(terminal: bool) -> Status:
    s = Status()
    s.console = Console(file=io.StringIO(), force_terminal=terminal, width=120, highlight=False)
    return s


def test_a_message_starts_a_live_line_that_repeats_it_in_a_terminal():
    s = status(terminal=True)
    s.notify("loading the model")
    assert s._live is not None and s._live.live.is_started
    s._live.refresh()
    shown = s.console.file.getvalue()
    assert shown.count("loading the model") >= 2  # the printed line, and the live line under it
    s.close()
    assert s._live is None


def test_a_bar_is_shown_from_zero():
    s = status(terminal=True)
    s.progress(0, 480)
    s._live.refresh()
    assert "embedding" in s.console.file.getvalue() and "0/480" in s.console.file.getvalue()
    s.progress(480, 480)
    assert not s._live.tasks  # a finished bar goes away
    s.close()


def test_steps_get_their_own_bars():
    s = status(terminal=True)
    s.progress(1, 3, "reading files")
    s.progress(0, 10)
    assert [task.description for task in s._live.tasks] == ["reading files", "embedding"]
    s.close()


def test_nothing_live_through_a_pipe():
    s = status(terminal=False)
    s.notify("loading the model")
    s.progress(0, 10)
    assert s._live is None
    assert s.console.file.getvalue() == "loading the model\n"


def test_a_quiet_command_starts_nothing():
    s = status(terminal=True)
    with s:
        pass
    assert s._live is None and s.console.file.getvalue() == ""
