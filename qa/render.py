"""Terminal output of answers: the passage, where it comes from, and its score."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.text import Text

from qa.documents import normalize_for_model
from qa.retriever import Answer, RetrievedPassage

NOT_FOUND = "No answer: nothing in the indexed documents answers this question."


def make_console(stderr: bool = False) -> Console:
    """Return a rich console that colours only real terminals (and honours NO_COLOR)."""
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def source_label(item: RetrievedPassage) -> str:
    """Return where a passage comes from: file name and character offsets."""
    p = item.passage
    return f"{Path(p.source).name}, characters {p.start}-{p.end}"


def passage_text(item: RetrievedPassage) -> Text:
    """Return the passage's text for display, white space folded."""
    return Text(normalize_for_model(item.passage.text))


def render_answer(console: Console, answer: Answer, limit: int | None = None) -> None:
    """Print an answer: its best ``limit`` passages, each with its source and score.

    When the bot judges that nothing answers, it says so first and shows only the
    closest passage, dimmed, so the user can judge for themselves.
    """
    shown = answer.passages[:limit] if limit else answer.passages
    if not answer.found:
        console.print(Text(NOT_FOUND, style="bold yellow"))
        shown = shown[:1]
        if shown:
            console.print(Text("Closest passage:", style="dim"))
    for rank, item in enumerate(shown, start=1):
        header = Text()
        header.append(f"[{rank}] ", style="bold cyan")
        header.append(source_label(item), style="cyan")
        header.append(f"  score {item.score:.3f}", style="dim")
        console.print(header)
        body = passage_text(item)
        if not answer.found:
            body.stylize("dim")
        console.print(body)
        if rank < len(shown):
            console.print()


def render_sources(console: Console, answer: Answer | None) -> None:
    """Print the ranked passages behind the last answer (the chat's ``/sources``)."""
    if answer is None:
        console.print("No question asked yet.")
        return
    for rank, item in enumerate(answer.passages, start=1):
        console.print(Text(f"[{rank}] {source_label(item)}  score {item.score:.3f}", style="cyan"))
        console.print(passage_text(item))


def answer_json(answer: Answer) -> str:
    """Return the answer as the one-line JSON object of ``qa ask --json``."""
    return json.dumps(answer.to_dict(), ensure_ascii=False)
