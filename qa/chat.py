"""The interactive chat: a prompt with line editing and history, or a plain line filter.

In a terminal, ``qa chat`` shows a prompt (GNU readline gives line editing and a
history kept between sessions). When standard input is not a terminal it answers
each line with no prompts and no colours, so it can be scripted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from rich.console import Console
from rich.text import Text

from qa.followup import Conversation
from qa.reader import answer_question
from qa.render import render_answer, render_sources
from qa.retriever import Answer, QuestionError, Retriever

EXIT_WORDS = {"exit", "quit", "/exit", "/quit", ":q"}
COMMANDS = ("/sources", "/reset", "/clear", "/help", "/exit", "/quit")
HELP = """Type a question in any language and press Enter. End a line with \\ to go on
to the next line; a pasted question of several lines is taken whole.
Commands (Tab completes them):
  /sources   the top passages behind the last answer
  /reset     forget the conversation (follow-up questions use it)
  /clear     clear the screen (also: clear)
  /help      this help
  exit       leave (also quit, /exit or Ctrl-D)
Ctrl-C clears the line you are typing, or stops an answer."""
SOURCES_SHOWN = 5
CONTINUATION = "\\"


@dataclass(frozen=True)
class ChatCommand:
    """One parsed chat line: ``kind`` is question, exit, help, sources, reset, empty or unknown."""

    kind: str
    text: str = ""


def parse_chat_line(line: str) -> ChatCommand:
    """Parse one line typed into the chat into a :class:`ChatCommand`.

    Lines starting with ``/`` are commands (``/sources /reset`` is the command its
    first word names); bare ``exit``, ``quit``, ``help`` and ``clear`` are commands
    too; anything else that isn't blank is a question.
    """
    stripped = line.strip()
    if not stripped:
        return ChatCommand("empty")
    lowered = stripped.lower()
    if lowered in EXIT_WORDS:
        return ChatCommand("exit")
    if lowered in {"/help", "/?", "help"}:
        return ChatCommand("help")
    if lowered in {"/clear", "clear"}:
        return ChatCommand("clear")
    if stripped.startswith("/"):
        first = lowered.split()[0]
        if first in {"/sources", "/reset"}:
            return ChatCommand(first[1:])
        return ChatCommand("unknown", stripped.split()[0])
    return ChatCommand("question", stripped)


class ChatSession:
    """The state of one conversation: the retriever and the last answer.

    ``refresh`` (optional) takes the retriever before each question after the first and
    returns it, or one over an index updated because the documents changed meanwhile.
    """

    def __init__(self, get_retriever: Callable[[], Retriever], console: Console, top_k: int = 1,
                 refresh: Callable[[Retriever], Retriever] | None = None):
        self._get_retriever = get_retriever
        self._refresh = refresh
        self._retriever: Retriever | None = None
        self.console = console
        self.top_k = top_k
        self.last_answer: Answer | None = None
        self.conversation = Conversation()

    @property
    def retriever(self) -> Retriever:
        """The retriever, loaded on first use and refreshed on every later one."""
        if self._retriever is None:
            self._retriever = self._get_retriever()
        elif self._refresh is not None:
            self._retriever = self._refresh(self._retriever)
        return self._retriever

    def handle(self, line: str) -> bool:
        """Act on one line of input; return False when the user wants to leave."""
        command = parse_chat_line(line)
        if command.kind == "exit":
            return False
        if command.kind == "help":
            self.console.print(Text(HELP))
        elif command.kind == "clear":
            self.console.clear()
        elif command.kind == "sources":
            render_sources(self.console, self.last_answer)
        elif command.kind == "reset":
            self.conversation.reset()
            self.last_answer = None
            self.console.print("Conversation forgotten.")
        elif command.kind == "unknown":
            self.console.print(Text(f"Unknown command {command.text}; type /help for the list."))
        elif command.kind == "question":
            self.answer(command.text)
        return True

    def answer(self, question: str) -> None:
        """Answer a question and remember it for ``/sources``."""
        try:
            answer = answer_question(self.retriever, question, max(self.top_k, SOURCES_SHOWN), self.conversation)
        except QuestionError as exc:
            self.console.print(Text(f"Error: {exc}"))
            return
        self.last_answer = answer
        render_answer(self.console, answer, limit=self.top_k)


def run_piped(session: ChatSession, lines: Iterable[str]) -> None:
    """Answer each line of a non-interactive input, separated by blank lines."""
    first = True
    for line in lines:
        command = parse_chat_line(line)
        if command.kind == "empty":
            continue
        if not first:
            session.console.print()
        first = False
        if command.kind == "question":
            session.console.print(Text(f"Q: {command.text}", style="bold"))
        if not session.handle(line):
            return


def complete_command(text: str, state: int) -> str | None:
    """Readline completer: the ``state``-th chat command starting with ``text`` (``/so`` -> ``/sources``)."""
    matches = [command for command in COMMANDS if text.startswith("/") and command.startswith(text.lower())]
    return matches[state] if state < len(matches) else None


def _setup_readline(history: Path) -> Callable[[], None]:
    try:
        import readline
    except ImportError:  # not on every platform; input() still works without it
        return lambda: None
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(1000)
    readline.set_completer(complete_command)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
        # A paste of several lines arrives as one question instead of one question a line.
        readline.parse_and_bind("set enable-bracketed-paste on")

    def save() -> None:
        try:
            readline.write_history_file(history)
        except OSError:
            pass

    return save


PROMPT = "\001\033[1;32m\002?\001\033[0m\002 "
MORE_PROMPT = "\001\033[2m\002.\001\033[0m\002 "


def read_entry(read: Callable[[str], str]) -> str:
    """Read one chat entry with ``read`` (``input``): a line, or lines joined while each ends with ``\\``.

    Raises EOFError (Ctrl-D) and KeyboardInterrupt (Ctrl-C) as ``read`` does.
    """
    lines = [read(PROMPT)]
    while lines[-1].rstrip().endswith(CONTINUATION):
        lines[-1] = lines[-1].rstrip()[: -len(CONTINUATION)]
        lines.append(read(MORE_PROMPT))
    return "\n".join(lines)


def run_interactive(session: ChatSession, history: Path, read: Callable[[str], str] = input) -> None:
    """Run the chat at a terminal prompt until exit, quit or Ctrl-D.

    Ctrl-C clears the line being typed, or stops the answer being worked out, and
    the prompt comes back, as in a shell.
    """
    save_history = _setup_readline(history)
    session.console.print(Text("qa chat: ask about your documents. /help for commands, Ctrl-D to leave.", style="dim"))
    try:
        while True:
            try:
                line = read_entry(read)
            except EOFError:
                session.console.print()
                break
            except KeyboardInterrupt:
                session.console.print()
                continue
            try:
                if not session.handle(line):
                    break
            except KeyboardInterrupt:
                session.console.print(Text("(stopped)", style="dim"))
    finally:
        save_history()
