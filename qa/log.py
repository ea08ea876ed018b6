"""A log of past questions and their answers, as ``llm logs`` keeps: ``qa log``.

One SQLite database, private to the user (``log.db`` in the user state directory, mode
0600). ``qa ask`` and ``qa chat`` add a row per answered or refused question; ``QA_LOG=0``
(or ``log = false`` in ``qa.toml``) keeps no log. Logging never stands in the way of an
answer: a log that can't be written is passed over.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qa.retriever import Answer

LOG_FILE = "log.db"
_SCHEMA = """
create table if not exists answers (
    id integer primary key,
    asked text not null,        -- ISO 8601, UTC
    question text not null,
    found integer not null,
    index_dir text not null,
    answer text not null        -- the answer as qa ask --json prints it
)
"""


def logging_enabled() -> bool:
    """Return False when the user turned the log off (``QA_LOG=0``, or ``log = false`` in qa.toml)."""
    return os.environ.get("QA_LOG", "1").strip().lower() not in {"0", "false", "no", "off"}


def log_path() -> Path:
    """Return the log database's path, in the user state directory."""
    from qa.paths import state_dir

    return state_dir() / LOG_FILE


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # private before the first row
    connection = sqlite3.connect(path, timeout=2.0)
    connection.execute(_SCHEMA)
    return connection


def record_answer(answer: Answer, index_dir: Path) -> None:
    """Add ``answer`` to the log (unless the log is off); any failure to write it is passed over."""
    if not logging_enabled():
        return
    try:
        with _connect(log_path()) as connection:
            connection.execute(
                "insert into answers (asked, question, found, index_dir, answer) values (?, ?, ?, ?, ?)",
                (datetime.now(timezone.utc).isoformat(timespec="seconds"), answer.question, int(answer.found),
                 str(index_dir), json.dumps(answer.to_dict(), ensure_ascii=False, allow_nan=False)),
            )
        connection.close()
    except (OSError, sqlite3.Error, ValueError):
        pass


def recent_answers(limit: int) -> list[dict]:
    """Return the ``limit`` latest logged answers, oldest first: ``{"asked", "index_dir", **answer}``.

    Raises sqlite3.Error or OSError for a log that can't be read.
    """
    path = log_path()
    if not path.exists():
        return []
    connection = _connect(path)
    try:
        rows = connection.execute(
            "select asked, index_dir, answer from answers order by id desc limit ?", (limit,)
        ).fetchall()
    finally:
        connection.close()
    return [{"asked": asked, "index_dir": index_dir, **json.loads(answer)} for asked, index_dir, answer in reversed(rows)]
