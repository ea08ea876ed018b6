"""The interactive chat driven through a real pseudo-terminal, as a person types into it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

from conftest import FAKE_MODEL  # noqa: E402

TESTS = Path(__file__).parent
pytestmark = pytest.mark.slow  # each test starts two real qa processes in a pseudo-terminal: seconds
PROMPT = r"\?(\x1b\[0m)? "  # the prompt, bold green in a terminal
MORE = "\x1b[2m.\x1b[0m "  # the continuation prompt, dim


@pytest.fixture
def chat(fake_model, isolated_dirs):
    env = {**os.environ, "QA_INDEX_DIR": str(isolated_dirs / "index"), "HOME": str(isolated_dirs),
           "XDG_STATE_HOME": str(isolated_dirs / "state"), "TERM": "xterm", "INPUTRC": "/dev/null",
           "QA_FAKE_SLOW_WORD": "slowpoke"}
    subprocess.run([sys.executable, str(TESTS / "fake_qa.py"), "index", "--model", FAKE_MODEL],
                   env=env, check=True, capture_output=True)
    child = pexpect.spawn(sys.executable, [str(TESTS / "fake_qa.py"), "chat"], env=env,
                          encoding="utf-8", timeout=30, dimensions=(40, 200))
    child.expect(PROMPT)
    yield child
    child.close(force=True)



def assert_still_answers_and_leaves(chat):
    """The chat answers a question after an interruption, then ``exit`` leaves it with status 0."""
    chat.sendline("Mohajer-6 drone Iran")
    chat.expect("Mohajer-6 dan seri Shahed")
    chat.expect(PROMPT)
    chat.sendline("exit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_ctrl_c_clears_the_half_typed_line_and_keeps_the_chat(chat):
    chat.send("a half typed question")
    chat.expect_exact("a half typed question")  # echoed: readline is reading (a signal sent before is lost)
    chat.sendcontrol("c")
    chat.expect(PROMPT)
    assert_still_answers_and_leaves(chat)


def test_ctrl_d_leaves(chat):
    chat.sendcontrol("d")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


@pytest.mark.parametrize("word", ["quit", "/exit"])
def test_exit_words_leave(chat, word):
    chat.sendline(word)
    chat.expect(pexpect.EOF)


def test_tab_completes_a_command(chat):
    chat.send("/so\t")
    chat.expect_exact("/sources")
    chat.send("\r")
    chat.expect("No question asked yet")


def test_clear_is_a_command_not_a_question(chat):
    chat.sendline("clear")
    chat.expect_exact("\x1b[2J")
    chat.expect(PROMPT)
    chat.sendline("/sources")
    chat.expect("No question asked yet")  # "clear" was not asked


def test_a_line_ending_in_backslash_goes_on(chat):
    chat.sendline("Mohajer-6 \\")
    assert chat.expect_exact([MORE, "score"]) == 0  # not answered yet: the question goes on
    chat.sendline("Shahed drone")
    chat.expect("Mohajer-6 dan seri Shahed")
    chat.expect(PROMPT)
    chat.sendline("/sources")
    chat.expect(r"\[1\]")


def test_a_pasted_question_of_several_lines_is_one_question(chat):
    chat.send("\x1b[200~Mohajer-6\nShahed drone\x1b[201~")
    chat.send("\r")
    chat.expect("Mohajer-6 dan seri Shahed")
    chat.expect(PROMPT)
    chat.sendline("/sources")
    chat.expect(r"\[1\]")
    assert "Q:" not in chat.before


def test_ctrl_c_stops_a_long_answer_and_keeps_the_chat(chat):
    chat.sendline("slowpoke Mohajer-6 drone")  # the fake model takes a minute over this one
    time.sleep(1)
    started = time.monotonic()
    chat.sendcontrol("c")
    chat.expect_exact("(stopped)", timeout=10)
    chat.expect(PROMPT)
    assert time.monotonic() - started < 10
    assert_still_answers_and_leaves(chat)
