"""A person's session with ``qa chat`` in a real terminal (tmux), judged by what the screen shows.

Typed keys go through tmux to the chat, and every assertion reads the captured screen: a
question answered, the up arrow bringing it back, Tab completing ``/so``, Ctrl-C dropping
a half-typed line, a multi-line paste taken as one question, Ctrl-D leaving with exit 0.
"""

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAKE_MODEL

TESTS = Path(__file__).parent
TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.skipif(TMUX is None, reason="tmux is not installed"),
              pytest.mark.slow]  # a real terminal and a real chat process: seconds each
ANSWER = "Mohajer-6 dan seri Shahed"


class Terminal:
    """One tmux window, 120 by 40, on a tmux server of its own (its own socket)."""

    def __init__(self, socket: str):
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True).stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "chat", *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "chat")

    def wait_for(self, check, what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"the screen never showed {what}:\n{screen}")
            time.sleep(0.1)

    def prompt_line(self) -> str:
        """The last line on screen that isn't blank (where the cursor is)."""
        return [line for line in self.screen().splitlines() if line.strip()][-1]

    def status(self) -> str:
        return self.tmux("display-message", "-p", "-t", "chat", "#{pane_dead} #{pane_dead_status}").strip()


@pytest.fixture
def terminal(fake_model, isolated_dirs):
    env = {"QA_INDEX_DIR": str(isolated_dirs / "index"), "HOME": str(isolated_dirs),
           "XDG_STATE_HOME": str(isolated_dirs / "state"), "INPUTRC": "/dev/null", "TERM": "xterm-256color"}
    subprocess.run([sys.executable, str(TESTS / "fake_qa.py"), "index", "--model", FAKE_MODEL],
                   env={**os.environ, **env}, check=True, capture_output=True)
    command = " ".join(["env", *(f"{key}={shlex.quote(value)}" for key, value in env.items()),
                        shlex.quote(sys.executable), shlex.quote(str(TESTS / "fake_qa.py")), "chat"])
    term = Terminal(f"qa-test-{os.getpid()}-{time.monotonic_ns()}")
    term.tmux("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", command,
              ";", "set-option", "-t", "chat", "remain-on-exit", "on")
    try:
        term.wait_for(lambda screen: "qa chat:" in screen and screen.rstrip().endswith("?"), "the prompt")
        yield term
    finally:
        subprocess.run([TMUX, "-L", term.socket, "kill-server"], capture_output=True)


def test_a_session_typed_into_the_chat(terminal):
    # Ctrl-C drops a half-typed line: "/sources" typed next is the command, not part of a question.
    terminal.keys("Which drones half", literal=True)
    terminal.wait_for(lambda screen: "Which drones half" in screen, "the typed text")
    terminal.keys("C-c")
    terminal.wait_for(lambda screen: screen.rstrip().endswith("?"), "a fresh prompt after Ctrl-C")
    terminal.keys("/sources", literal=True)
    terminal.keys("Enter")
    terminal.wait_for(lambda screen: "No question asked yet" in screen, "/sources run on its own")
    assert terminal.status().startswith("0")  # Ctrl-C did not leave

    # A question, answered.
    terminal.keys("Mohajer-6 drone Iran", literal=True)
    terminal.keys("Enter")
    terminal.wait_for(lambda screen: ANSWER in screen and screen.rstrip().endswith("?"), "the answer")

    # The up arrow brings the question back; Enter asks it again.
    terminal.keys("Up")
    terminal.wait_for(lambda screen: terminal.prompt_line() == "? Mohajer-6 drone Iran", "the question recalled")
    terminal.keys("Enter")
    terminal.wait_for(lambda screen: screen.count(ANSWER) >= 2 and screen.rstrip().endswith("?"),
                      "the recalled question answered")

    # Tab completes a command.
    terminal.keys("/so", literal=True)
    terminal.keys("Tab")
    terminal.wait_for(lambda screen: terminal.prompt_line().startswith("? /sources"), "/so completed to /sources")
    terminal.keys("Enter")
    terminal.wait_for(lambda screen: "[5]" in screen, "the sources of the last answer")

    # /clear empties the screen.
    terminal.keys("/clear", literal=True)
    terminal.keys("Enter")
    terminal.wait_for(lambda screen: ANSWER not in screen and screen.strip() == "?", "a cleared screen")

    # Ctrl-D leaves, with exit status 0.
    terminal.keys("C-d")
    terminal.wait_for(lambda screen: terminal.status() == "1 0", "the chat ending with status 0")


def test_a_pasted_question_of_several_lines_is_one_question(terminal):
    terminal.tmux("set-buffer", "-b", "question", "Which drones\ndid Russia import? Mohajer-6")
    terminal.tmux("paste-buffer", "-p", "-b", "question", "-t", "chat")  # -p: bracketed, as terminals paste
    terminal.wait_for(lambda screen: "did Russia import? Mohajer-6" in screen, "the pasted text")
    assert ANSWER not in terminal.screen()  # a paste is not sent line by line
    terminal.keys("Enter")
    terminal.wait_for(lambda screen: ANSWER in screen and screen.rstrip().endswith("?"), "the answer")
    assert terminal.screen().count(ANSWER) == 1
