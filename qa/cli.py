"""The ``qa`` command line: parse, call the core, render.

Heavy libraries are imported inside the commands that need them, so ``qa --help``
and ``qa --version`` stay instant.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from qa import __version__
from qa.models.names import DEFAULT_MODEL, LICENCES, canonical_model_name, short_name
from qa.paths import INDEX_DIR_ENV, MODEL_ENV, default_index_dir

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ask questions, in any language, about your documents. Runs entirely on this machine.",
)

IndexDirOption = typer.Option(
    None,
    "--index-dir",
    envvar=INDEX_DIR_ENV,
    help="Index directory [default: index/ of a source checkout, else the user data dir].",
    show_default=False,
)
ModelOption = typer.Option(
    None,
    "--model",
    envvar=MODEL_ENV,
    callback=lambda value: canonical_model_name(value),
    help="embeddinggemma, e5-small (the fast choice for very large libraries), or a "
    f"sentence-transformers model name or path [default: the index's model, else {short_name(DEFAULT_MODEL)}].",
    show_default=False,
)


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error to stderr and exit with ``code``."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn qa's own exceptions into one-line errors, and Ctrl-C into a clean exit."""
    from qa.documents import DocumentError
    from qa.embedder import EmbedderError
    from qa.evaluate import EvalSetError
    from qa.indexer import IndexingError
    from qa.pipeline import PipelineError
    from qa.retriever import QuestionError
    from qa.store import StoreError

    try:
        yield
    except (DocumentError, EmbedderError, EvalSetError, IndexingError, PipelineError, QuestionError, StoreError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("\nInterrupted; the index is unchanged (a rerun of qa index continues where it stopped).", err=True)
        raise typer.Exit(130)


class Status:
    """Status lines and an embedding progress bar on stderr."""

    def __init__(self):
        from qa.render import make_console

        self.console = make_console(stderr=True)
        self._progress = None
        self._task = None

    def notify(self, message: str) -> None:
        """Print one status line, dimmed (as plain text: it can hold paths and file names)."""
        from rich.text import Text

        self.console.print(Text(message, style="dim"))

    def progress(self, done: int, total: int) -> None:
        """Advance the embedding progress bar: texts done, texts per second, time left."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if not self.console.is_terminal:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("embedding"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("embedding", total=total, rate="")
        task = self._progress.tasks[0]
        speed = task.speed
        self._progress.update(self._task, completed=done, total=total,
                              rate=f"{speed:.1f} texts/s" if speed else "")
        if done >= total:
            self._progress.stop()
            self._progress = None


def _resolve_index_dir(index_dir: Optional[Path]) -> Path:
    return index_dir.expanduser() if index_dir else default_index_dir()


def _open_retriever(index_dir: Optional[Path], model: Optional[str], status: Status):
    from qa.pipeline import open_retriever

    return open_retriever(
        _resolve_index_dir(index_dir), model, default_index_dir(), status.notify, status.progress
    )


def _keep_fresh(retriever, index_dir: Optional[Path], status: Status):
    from qa.pipeline import keep_fresh

    return keep_fresh(retriever, _resolve_index_dir(index_dir), status.notify, status.progress)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qa {__version__}")
        typer.echo(f"default model: {DEFAULT_MODEL} ({short_name(DEFAULT_MODEL)}), {LICENCES[DEFAULT_MODEL]}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Ask questions, in any language, about your documents. Runs entirely on this machine."""


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question, in any language."),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, max=100, help="How many passages to show."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Answer one question with the passage that answers it."""
    from qa.render import answer_json, make_console, render_answer
    from qa.retriever import clean_question

    with user_errors():
        clean_question(question)
        status = Status()
        retriever = _open_retriever(index_dir, model, status)
        answer = retriever.ask(question, top_k=top_k)
    if as_json:
        typer.echo(answer_json(answer))
    else:
        render_answer(make_console(), answer, limit=top_k)


@app.command()
def chat(
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, max=100, help="How many passages to show per answer."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Chat: ask question after question. Reads lines from stdin when it is not a terminal."""
    from qa.chat import ChatSession, run_interactive, run_piped
    from qa.render import make_console

    with user_errors():
        status = Status()
        console = make_console()
        session = ChatSession(lambda: _open_retriever(index_dir, model, status), console, top_k=top_k,
                              refresh=lambda retriever: _keep_fresh(retriever, index_dir, status))
        session.retriever  # load before the first prompt, so errors surface at once
        if sys.stdin.isatty() and sys.stdout.isatty():
            from platformdirs import user_state_path

            run_interactive(session, user_state_path("qa") / "chat_history")
        else:
            run_piped(session, sys.stdin)


@app.command("index")
def index_command(
    paths: Optional[List[str]] = typer.Argument(
        None,
        help="Files, directories (recursive) and globs: .txt .md .html .pdf .docx. They join the "
        "documents indexed before [default: update what is indexed; the bundled article for a new index].",
        show_default=False,
    ),
    remove: Optional[List[str]] = typer.Option(
        None, "--remove", help="Remove this document (or every document under this directory) from the index."
    ),
    replace_all: bool = typer.Option(False, "--replace", help="Index exactly PATHS, dropping every other document."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every skipped file, not only newly skipped ones."),
) -> None:
    """Add documents to the index, or bring it up to date: only changed documents are embedded.

    Deleted documents are dropped. An interrupted run leaves the index as it was,
    and the next run continues where it stopped.
    """
    from qa.indexer import update_index

    if replace_all and not paths:
        fail("--replace needs the PATHs to index")
    with user_errors():
        directory = _resolve_index_dir(index_dir)
        from qa.store import ensure_writable

        ensure_writable(directory)
        status = Status()
        report = update_index(
            directory, paths or [], model=model, remove=remove or [], replace_all=replace_all,
            notify=status.notify, progress=status.progress,
        )
    from qa.render import make_console, render_index_report

    render_index_report(make_console(), make_console(stderr=True), report, verbose=verbose)
    if report.failed_inputs:
        fail("; ".join(f"{item.path}: {item.reason}" for item in report.failed_inputs))


@app.command("sources")
def sources_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per document, a line each."),
    index_dir: Optional[Path] = IndexDirOption,
) -> None:
    """List the indexed documents: passages, format, when added, content hash."""
    import json

    from qa.render import make_console, render_sources_table
    from qa.store import IndexCorrupt, read_index

    directory = _resolve_index_dir(index_dir)
    with user_errors():
        try:
            snapshot = read_index(directory)
        except IndexCorrupt as exc:
            from qa.pipeline import repair_message

            fail(repair_message(exc, directory, default_index_dir()))
    documents = snapshot.manifest.get("documents", [])
    if as_json:
        for record in documents:
            typer.echo(json.dumps(
                {key: record.get(key) for key in ("source", "kind", "passages", "added", "sha256", "title", "note")},
                ensure_ascii=False,
            ))
    else:
        render_sources_table(make_console(), documents)


@app.command("eval")
def eval_command(
    file: Path = typer.Argument(..., help='JSONL: {"question": str, "answers": [str, ...]} a line.'),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    details: bool = typer.Option(False, "--details", help="Add one row per question."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Measure answer quality on a set of questions with known answers.

    A passage is a hit when it contains one of the answer strings; an empty answer
    list means the documents cannot answer. Reports Hit@1, Hit@5 and MRR, and how
    "no answer" fares.
    """
    import json

    from qa.evaluate import evaluate, metrics, read_eval_set
    from qa.render import make_console, render_eval

    with user_errors():
        items = read_eval_set(file)
        retriever = _open_retriever(index_dir, model, Status())
        results = evaluate(lambda q, k: retriever.ask(q, top_k=k), items)
    summary = metrics(results)
    if as_json:
        if details:
            summary["details"] = [
                {"id": r.item.id, "question": r.item.question, "answerable": bool(r.item.answers),
                 "rank": r.rank, "found": r.found}
                for r in results
            ]
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        render_eval(make_console(), summary, results if details else None)


def main() -> None:
    """Entry point of the ``qa`` script."""
    app(prog_name="qa")


if __name__ == "__main__":
    main()
