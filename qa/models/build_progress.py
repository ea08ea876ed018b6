"""Progress bars for a model build's steps (download N/25, assemble, extract) on stderr.

rich is imported only when a bar is first drawn; nothing is drawn when stderr is not
a terminal (logs and CI get the status lines alone).
"""

from __future__ import annotations

import sys


class StepBars:
    """A callable ``(step, done, total)`` that shows one transient bar per build step."""

    def __init__(self, stream=None):
        self._stream = stream if stream is not None else sys.stderr
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        """Advance the bar of ``step`` to ``done`` of ``total``; a step ends when done == total."""
        if not getattr(self._stream, "isatty", lambda: False)():
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description:>8}"), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[count]}"), TimeRemainingColumn(),
                console=Console(file=self._stream), transient=True,
            )  # fmt: skip
            self._progress.start()
        # Steps count items (download 3/25) or bytes (extract 410/1,270 MB).
        count = f"{done}/{total}" if total <= 1000 else f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB"
        if step not in self._tasks:
            self._tasks[step] = self._progress.add_task(step, total=total, count=count)
        self._progress.update(self._tasks[step], completed=done, total=total, count=count)
        if done >= total and all(t.finished for t in self._progress.tasks):
            self.close()

    def close(self) -> None:
        """Stop drawing (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks = {}
