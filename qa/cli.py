"""The ``qa`` command line: parse, call the core, render.

Heavy libraries are imported inside the commands that need them, so ``qa --help``
and ``qa --version`` stay instant.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from qa import __version__
from qa.cli_options import IndexDirOption, ModelOption, StoreOption, TopKOption
from qa.models.names import DEFAULT_MODEL, LICENCES, short_name
from qa.paths import default_index_dir
from qa.status import Status

app = typer.Typer(
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ask questions, in any language, about your documents. Runs entirely on this machine.",
)

def fail(message: str, code: int = 1) -> None:
    """Print a one-line error to stderr and exit with ``code``.

    Control characters in it (a file name can hold any) are shown escaped: the error
    stays one line, and nothing in it reaches the terminal as a command.
    """
    from qa.terminal import one_line

    typer.echo(f"Error: {one_line(message)}", err=True)
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
    from qa.vectorstore import VectorStoreError

    try:
        yield
    except (DocumentError, EmbedderError, EvalSetError, IndexingError, PipelineError, QuestionError, StoreError,
            VectorStoreError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("\nInterrupted; the index is unchanged (a rerun of qa index continues where it stopped).", err=True)
        raise typer.Exit(130)


def _resolve_index_dir(index_dir: Optional[Path]) -> Path:
    return index_dir.expanduser() if index_dir else default_index_dir()


def _open_retriever(index_dir: Optional[Path], model: Optional[str], status: Status, store: Optional[str] = None,
                    one_shot: bool = False):
    from qa.pipeline import open_retriever

    with status:
        return open_retriever(
            _resolve_index_dir(index_dir), model, default_index_dir(), status.notify, status.progress, store,
            one_shot=one_shot,
        )


def _keep_fresh(retriever, index_dir: Optional[Path], status: Status):
    from qa.pipeline import keep_fresh

    with status:
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


REFUSED_EXIT = 3
"""``qa ask``'s exit code when nothing in the documents answers: 0 is an answer, 1 an error, 2 a usage
error (typer's), so a script can tell the four apart, as with grep."""

STDIN_QUESTION_MAX = 1 << 20
"""Characters of standard input read as a question at most; a question is cut to the model's window anyway."""


def _question_from(argument: Optional[str]) -> str:
    """Return the question: the argument, or standard input for ``-`` or no argument with a pipe."""
    if argument is not None and argument != "-":
        return argument
    if argument is None and sys.stdin.isatty():
        fail("give a question (qa ask \"...\"), or pipe one in (echo \"...\" | qa ask -)", code=2)
    return sys.stdin.read(STDIN_QUESTION_MAX).strip()


@app.command()
def ask(
    question: Optional[str] = typer.Argument(
        None, metavar="QUESTION",
        help="The question, in any language; - (or none, with a pipe) reads it from standard input.",
        show_default=False,
    ),
    top_k: int = TopKOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
    store: Optional[str] = StoreOption,
) -> None:
    """Answer one question with the passage that answers it.

    Exit code: 0 with an answer, 3 when nothing in the documents answers (the closest
    passage is still shown), 1 on an error, 2 on a usage error.
    """
    from qa.reader import answer_question
    from qa.render import answer_json, make_console, render_answer
    from qa.retriever import clean_question

    question = _question_from(question)
    with user_errors():
        clean_question(question)
        status = Status()
        retriever = _open_retriever(index_dir, model, status, store, one_shot=True)
        answer = answer_question(retriever, question, top_k)
    if as_json:
        typer.echo(answer_json(answer))
    else:
        render_answer(make_console(), answer, limit=top_k)
    from qa.log import record_answer

    record_answer(answer, _resolve_index_dir(index_dir))
    if not answer.found:
        raise typer.Exit(REFUSED_EXIT)


@app.command()
def chat(
    top_k: int = TopKOption,
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
    store: Optional[str] = StoreOption,
) -> None:
    """Chat: ask question after question. Reads lines from stdin when it is not a terminal."""
    from qa.chat import ChatSession, run_interactive, run_piped
    from qa.render import make_console

    with user_errors():
        status = Status()
        console = make_console()
        from qa.log import record_answer

        session = ChatSession(lambda: _open_retriever(index_dir, model, status, store), console, top_k=top_k,
                              on_answer=lambda answer: record_answer(answer, _resolve_index_dir(index_dir)),
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
        metavar="PATH",
        help="Files, directories (recursive) and globs: .txt .md .html .pdf .docx. They join the "
        "documents indexed before [default: update what is indexed; the bundled article for a new index].",
        show_default=False,
    ),
    remove: Optional[List[str]] = typer.Option(
        None, "--remove", metavar="PATH", help="Remove this document (or every document under this directory) from the index; 'bundled' removes the example article qa ships with."
    ),
    replace_all: bool = typer.Option(False, "--replace", help="Index exactly PATHS, dropping every other document."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every skipped file, not only newly skipped ones."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="[ADDRESS]",
        help="Embed on Ray (pip install 'qa[ray]'): a local runtime, or 'auto' / ray://HOST:10001 for a cluster.",
    ),
    ray_workers: int = typer.Option(1, "--ray-workers", min=1, help="How many Ray actors embed, each with the model."),
    store: Optional[str] = StoreOption,
) -> None:
    """Add documents to the index, or bring it up to date: only changed documents are embedded.

    Deleted documents are dropped. An interrupted run leaves the index as it was,
    and the next run continues where it stopped.
    """
    from qa.indexer import update_index

    if replace_all and not paths:
        fail("--replace needs the PATHs to index")
    ray_options = _ray_options(ray, ray_workers)
    with user_errors():
        directory = _resolve_index_dir(index_dir)
        from qa.store import ensure_writable

        ensure_writable(directory)
        only_bundled = _holds_only_the_bundled_article(directory)
        with Status() as status:
            report = update_index(
                directory, paths or [], model=model, remove=[_removal(path) for path in remove or []],
                replace_all=replace_all, notify=status.notify, progress=status.progress, ray=ray_options,
                store=store,
            )
    from qa.render import make_console, render_index_report

    if report.written or not report.failed_inputs:  # an error that changed nothing is printed alone
        render_index_report(make_console(), make_console(stderr=True), report, verbose=verbose)
    if only_bundled and report.added and not replace_all:
        # the first documents of the user's own, beside the article qa ships with: say once how to drop it
        from qa.pipeline import index_option

        option = index_option(directory, default_index_dir())
        typer.echo(f"note: the bundled example article is still in this index; `qa index --remove bundled{option}` "
                   "drops it", err=True)
    if report.failed_inputs:
        fail("; ".join(f"{item.path}: {item.reason}" for item in report.failed_inputs))


def _ray_options(ray: Optional[str], workers: int):
    """Return ``qa index --ray``'s :class:`qa.indexer.RayOptions` (None without ``--ray``);
    fails in one line when Ray is not installed."""
    if ray is None:
        return None
    from qa.indexer import RayOptions
    from qa.ray_embed import INSTALL_HINT, ray_address, ray_installed

    if not ray_installed():
        fail(INSTALL_HINT)
    return RayOptions(ray_address(ray), workers)


def _holds_only_the_bundled_article(directory: Path) -> bool:
    """Whether the index in ``directory`` holds the bundled article alone (then adding the
    user's own documents says once how to drop it). False when it can't be told."""
    from qa.store import read_library

    library = read_library(directory)
    return library is not None and library.bundled_only


BUNDLED_NAME = "bundled"
"""What ``qa index --remove`` takes for the example article qa ships with."""


def _removal(path: str) -> str:
    """Return a ``--remove`` argument as a path: ``bundled`` names the bundled article
    (unless a file of that name is where the user stands)."""
    from qa.paths import BUNDLED_ARTICLE

    if path == BUNDLED_NAME and not Path(path).exists():
        return str(BUNDLED_ARTICLE)
    return path


@app.command("log")
def log_command(
    count: int = typer.Option(10, "--count", "-n", min=1, max=100_000, metavar="N", help="How many of the latest to show."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per answer, a line each."),
) -> None:
    """Show past questions and their answers, oldest first (QA_LOG=0 keeps no log)."""
    import sqlite3

    from qa.log import log_path, logging_enabled, recent_answers
    from qa.render import make_console, render_log
    from qa.terminal import json_safe

    try:
        entries = recent_answers(count)
    except (OSError, sqlite3.Error) as exc:
        fail(f"cannot read the log {log_path()}: {exc}")
    if as_json:
        for entry in entries:
            typer.echo(json_safe(json.dumps(entry, ensure_ascii=False, allow_nan=False)))
        return
    if not entries:
        off = " (the log is off: QA_LOG=0 or log = false in qa.toml)" if not logging_enabled() else ""
        typer.echo(f"No questions logged yet{off}.")
        return
    render_log(make_console(), entries)


@app.command("sources")
def sources_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per document, a line each."),
    index_dir: Optional[Path] = IndexDirOption,
    store: Optional[str] = StoreOption,
) -> None:
    """List the indexed documents: passages, format, when added, content hash."""
    from qa.pipeline import check_store, index_option, repair_message
    from qa.render import make_console, render_sources_table, source_record
    from qa.store import IndexCorrupt, IndexMissing, read_index
    from qa.terminal import json_safe

    directory = _resolve_index_dir(index_dir)
    with user_errors():
        try:
            snapshot = read_index(directory)
        except IndexMissing as exc:
            option = index_option(directory, default_index_dir())
            fail(f"{exc}: `qa index PATH...{option}` makes one (`qa index{option}` alone indexes the bundled article)")
        except IndexCorrupt as exc:
            fail(repair_message(exc, directory, default_index_dir()))
        check_store(snapshot.manifest, store, directory, index_option(directory, default_index_dir()))
    documents = snapshot.manifest.documents
    if as_json:
        for record in documents:
            typer.echo(json_safe(json.dumps(source_record(record), ensure_ascii=False, allow_nan=False)))
    else:
        render_sources_table(make_console(), documents)


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="HOST",
        help="Address to listen on. Any but loopback needs an API token: $QA_SERVE_TOKEN, else one is made and printed.",
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, metavar="PORT", help="Port to listen on (0: any free port)."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
    store: Optional[str] = StoreOption,
) -> None:
    """Serve a chat page and an HTTP API for the documents, on this machine (Ctrl-C stops it).

    The page is at http://127.0.0.1:8000/; the API is POST /api/ask, GET /api/sources,
    GET /api/health (schema: /openapi.json). The model and index are loaded once.
    """
    import os

    try:
        from qa import server
    except ImportError as exc:
        fail(f"qa serve needs FastAPI and uvicorn, which are not installed ({exc.name}): pip install 'qa[serve]'")
    with user_errors():
        loopback = server.is_loopback(host)
        token = server.choose_token(loopback, os.environ)
        try:
            sock = server.bind(host, port)
        except server.ServeError as exc:
            fail(str(exc))
        # Bound first, so a taken port fails at once; clients that come early wait in its backlog.
        service = _answer_service(index_dir, model, Status(), store)
        app_ = server.create_app(service, token=token, loopback=loopback)
        server.announce(server.url_of(sock), token, lambda line: typer.echo(line))
        try:
            server.run(app_, sock)
        except KeyboardInterrupt:
            pass
    typer.echo("qa serve: stopped")


def _answer_service(index_dir: Optional[Path], model: Optional[str], status: Status, store: Optional[str] = None):
    from qa.retriever import Retriever
    from qa.service import AnswerService

    directory = _resolve_index_dir(index_dir)
    return AnswerService(
        directory,
        open_retriever=lambda: _open_retriever(index_dir, model, status, store),
        keep_fresh=lambda retriever: _keep_fresh(retriever, index_dir, status),
        reload=lambda retriever: Retriever(_read_index_or_repair(directory), retriever.embedder),
    )


def _read_index_or_repair(directory: Path):
    """Return the index in ``directory``, or raise a PipelineError naming the command that
    repairs it, as ``ask`` and ``sources`` say."""
    from qa.pipeline import PipelineError, repair_message
    from qa.store import IndexCorrupt, read_index

    try:
        return read_index(directory)
    except IndexCorrupt as exc:
        raise PipelineError(repair_message(exc, directory, default_index_dir())) from None


@app.command("eval")
def eval_command(
    file: Path = typer.Argument(..., metavar="FILE", help='JSONL: {"question": str, "answers": [str, ...]} a line.'),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    details: bool = typer.Option(False, "--details", help="Add one row per question."),
    index_dir: Optional[Path] = IndexDirOption,
    model: Optional[str] = ModelOption,
    store: Optional[str] = StoreOption,
) -> None:
    """Measure answer quality on a set of questions with known answers.

    A passage is a hit when it contains one of the answer strings; an empty answer
    list means the documents cannot answer. Reports Hit@1, Hit@5 and MRR, and how
    "no answer" fares.
    """
    from qa.evaluate import evaluate, metrics, read_eval_set
    from qa.reader import answer_question
    from qa.render import make_console, render_eval
    from qa.terminal import json_safe

    with user_errors():
        items = read_eval_set(file)
        retriever = _open_retriever(index_dir, model, Status(), store)
        results = evaluate(lambda q, k: answer_question(retriever, q, k), items)
    summary = metrics(results)
    if as_json:
        if details:
            summary["details"] = [
                {"id": r.item.id, "question": r.item.question, "answerable": bool(r.item.answers),
                 "rank": r.rank, "found": r.found}
                for r in results
            ]
        typer.echo(json_safe(json.dumps(summary, ensure_ascii=False, allow_nan=False)))
    else:
        render_eval(make_console(), summary, results if details else None)


def optional_ray_address(args: List[str]) -> List[str]:
    """Return ``args`` with ``--ray`` given its default value, ``local``, when no ADDRESS follows it.

    ``qa index --ray docs/`` means a local runtime; an ADDRESS is ``local``, ``auto``,
    ``ray://...`` or ``HOST:PORT``. (click has no option whose value is optional.)
    """
    from qa.ray_embed import looks_like_address

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ray" and (i + 1 == len(out) or not looks_like_address(out[i + 1])):
            out[i] = "--ray=local"
    return out


def main() -> None:
    """Entry point of the ``qa`` script: settings from ``qa.toml`` (beneath the environment), then the command."""
    import os

    from qa.config import ConfigError, apply_config, config_path, read_config

    try:
        apply_config(read_config(config_path()), os.environ)
    except ConfigError as exc:
        try:
            fail(str(exc))  # outside the app: its typer.Exit is turned into the exit code here
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
    args = sys.argv[1:]
    app(prog_name="qa", args=optional_ray_address(args) if "--ray" in args else args)


if __name__ == "__main__":
    main()
