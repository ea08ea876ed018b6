"""Terminal output of answers: the passage, where it comes from, and its score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rich.console import Console
from rich.text import Text

from qa.documents import normalize_for_model
from qa.retriever import Answer, RetrievedPassage
from qa.terminal import SafeConsole, json_safe, one_line

if TYPE_CHECKING:
    from qa.manifest import DocumentRecord
    from qa.evaluate import QuestionResult
    from qa.indexer import IndexReport

NOT_FOUND = "No answer: nothing in the indexed documents answers this question."
HIGHLIGHT_STYLE = "bold yellow"


def make_console(stderr: bool = False) -> Console:
    """Return a rich console that colours only real terminals (and honours NO_COLOR), and
    never lets a control character of a document or file name through (:mod:`qa.terminal`)."""
    console = SafeConsole(stderr=stderr, highlight=False)
    console.soft_wrap = not console.is_terminal  # pipes get whole lines, terminals wrap
    return console


TITLE_SHOWN_MAX = 80


def display_title(title: str | None) -> str | None:
    """Return a document title as shown beside an answer, or None when there is none.

    Markdown heading marks are dropped, white space folded, and a title longer than
    :data:`TITLE_SHOWN_MAX` characters is cut with an ellipsis, so that the header of an
    answer stays one line.
    """
    if not title:
        return None
    shown = " ".join(title.lstrip("#").split())
    if len(shown) > TITLE_SHOWN_MAX:
        shown = shown[: TITLE_SHOWN_MAX - 1].rstrip() + "\u2026"
    return shown or None


def source_label(item: RetrievedPassage) -> str:
    """Return where a passage comes from: its document's title, then file and page, line or characters.

    ``Rusia Akan Membeli ... (000_007ef922b28a0a10.txt, line 17)``; a document without a
    title is named by its file alone (``notes.txt, line 3``).
    """
    p = item.passage
    location = passage_location(p.source, p.page, p.line, p.start, p.end)
    title = display_title(p.title)
    return f"{one_line(title)} ({location})" if title else location


def passage_location(source: str, page: int | None, line: int | None, start: int, end: int) -> str:
    """Return a passage's file name and place in it: ``report.pdf, page 3``, ``notes.txt, line 12``,
    or ``page.html, characters 10-250`` when the format has neither pages nor lines."""
    if page:
        where = f"page {page}"
    elif line:
        where = f"line {line}"
    else:
        where = f"characters {start}-{end}"
    return f"{one_line(Path(source).name)}, {where}"


def short_time(iso: str | None) -> str:
    """Return an ISO 8601 time as ``2026-12-04 19:51`` (minutes, no zone), or "" for none."""
    return str(iso or "")[:16].replace("T", " ")


def passage_text(item: RetrievedPassage) -> Text:
    """Return the passage's text for display, normalised and folded, its answer highlighted.

    The highlight offsets index the raw passage text, so the text is cut there first
    and each piece is normalised on its own, the same way as an unhighlighted passage.
    """
    raw = item.passage.text
    if not item.highlight:
        return Text(normalize_for_model(raw))
    start, end = item.highlight
    text = Text()
    for piece, style in ((raw[:start], None), (raw[start:end], HIGHLIGHT_STYLE), (raw[end:], None)):
        folded = normalize_for_model(piece)
        if not folded:
            continue
        if text.plain and not text.plain.endswith(" "):
            text.append(" ")
        text.append(folded, style=style)
    return text


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
    if answer.truncated:
        console.print(Text("(the question is longer than the model reads; only its beginning was used)", style="dim"))
    if answer.context:
        console.print(Text(f"(read as a follow-up to: {answer.context})", style="dim"))
    if answer.written and answer.found:
        console.print(Text(answer.written, style="bold"))
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
    return json_safe(json.dumps(answer.to_dict(), ensure_ascii=False, allow_nan=False))


def is_expected(result: QuestionResult) -> bool:
    """Return True when the bot did what an evaluation row expects.

    An answerable question needs a hit at rank 1 and must not be refused (a refusal
    counts as a false refusal even with the right passage first); an unanswerable
    one must be refused. ``render_eval`` marks the other rows as misses.
    """
    if result.item.answers:
        return result.rank == 1 and result.found
    return not result.found


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_eval(console: Console, summary: dict, results: Sequence[QuestionResult] | None = None) -> None:
    """Print evaluation metrics, and with ``results`` one row per question."""
    from rich.table import Table

    if results:
        table = Table("id", "question", "rank", "found", title="Questions", title_justify="left")
        for r in results:
            rank = "-" if not r.item.answers else str(r.rank or "miss")
            # questions and ids are the user's text: Text keeps them from being read as markup
            table.add_row(Text(r.item.id or ""), Text(r.item.question), rank, "yes" if r.found else "no",
                          style=None if is_expected(r) else "red")
        console.print(table)
    n, u = summary["n_answerable"], summary["n_unanswerable"]
    console.print(
        f"answerable questions: {n}   Hit@1 {_share(summary['hit@1'])}   Hit@5 {_share(summary['hit@5'])}"
        f"   MRR {_share(summary['mrr'])}   wrongly refused {summary['false_refusals']}"
    )
    console.print(f"unanswerable questions: {u}   correctly refused {summary['no_answer_correct']}")


def render_index_report(out: Console, err: Console, report: IndexReport, verbose: bool = False) -> None:
    """Print what ``qa index`` did: skipped files (to ``err``), then one summary line.

    Files skipped for the same reason as on the last run are counted in one line
    rather than listed again, unless ``verbose``.
    """
    repeated = 0
    for item in report.listed_skips():
        if not verbose and (item.path, item.reason) in report.skipped_before:
            repeated += 1
        else:
            err.print(Text(f"skipped {one_line(item.path)}: {one_line(item.reason)}", style="yellow"))
    if repeated:
        files = f"{repeated} file{'s' * (repeated != 1)}"
        err.print(Text(f"skipped {files} as on the last run (--verbose lists them)", style="yellow"))
    for item in report.notes:
        err.print(Text(f"note: {one_line(item.path)}: {one_line(item.reason)}", style="dim"))
    changes = (
        f"{len(report.added)} new, {len(report.updated)} changed, {report.unchanged} unchanged, "
        f"{len(report.removed)} removed"
    )
    if not report.written:
        out.print(Text(f"The index in {report.directory} is up to date: {report.documents} document(s), "
                       f"{report.passages} passages."))
        return
    embedded = f"; embedded {report.embedded} texts" if report.embedded else ""
    resumed = f", {report.resumed} more from an interrupted run" if report.resumed else ""
    out.print(Text(
        f"Indexed {report.passages} passages from {report.documents} document(s) into {report.directory} "
        f"in {report.seconds:.1f} s ({changes}{embedded}{resumed})."
    ))


SOURCE_FIELDS = ("source", "kind", "passages", "added", "sha256", "title", "note")


def source_record(record: DocumentRecord) -> dict:
    """Return one indexed document (a manifest record) as ``qa sources --json`` prints it.

    Shared with ``GET /api/sources``, so both list a document with the same fields.
    """
    return {key: getattr(record, key) for key in SOURCE_FIELDS}


def render_sources_table(console: Console, documents: Sequence[DocumentRecord]) -> None:
    """Print the indexed documents (``qa sources``): path, format, passages, added, hash.

    A terminal gets a table; a pipe gets one tab-separated line per document, whole
    paths unwrapped, for ``cut``, ``grep`` and ``sort``.
    """
    if not documents:
        console.print("The index holds no documents.")
        return
    rows = [
        tuple(one_line(field) for field in (
            record.source, record.kind, str(record.passages), short_time(record.added), (record.sha256 or "")[:12]))
        for record in documents
    ]
    if not console.is_terminal:
        for row in rows:  # written past rich, which would expand the tabs
            console.file.write("\t".join(row) + "\n")
        return
    from rich.table import Column, Table

    table = Table(
        Column("document", overflow="fold", ratio=1), "format", Column("passages", justify="right"),
        Column("added", no_wrap=True), Column("sha256", no_wrap=True),
    )
    for row in rows:
        # file names are the user's text: Text keeps "[b]" in a name from being read as markup
        table.add_row(*(Text(field) for field in row))
    console.print(table)


def render_log(console: Console, entries: Sequence[dict]) -> None:
    """Print logged answers (``qa log``): when, the question, and the best passage's source, or the refusal."""
    for entry in entries:
        console.print(Text(f"{short_time(entry.get('asked'))}  {one_line(str(entry.get('question', '')))}", style="bold"))
        passages = entry.get("passages") or []
        if not entry.get("found"):
            console.print(Text("  no answer", style="yellow"))
        elif passages:
            top = passages[0]
            where = passage_location(str(top.get("source", "")), top.get("page"), top.get("line"),
                                     top.get("start", 0), top.get("end", 0))
            console.print(Text(f"  {where}  score {top.get('score', 0):.3f}", style="cyan"))
            console.print(Text("  " + normalize_for_model(str(top.get("text", "")))[:200]))

