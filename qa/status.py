"""What a long command is doing, on stderr: status lines, a spinner, and progress bars.

The ``Status`` of ``qa index``, ``ask``, ``chat`` and ``serve``: what the core
reports through its ``notify`` and ``progress`` callbacks, shown with rich (imported
when the first line is shown, not when the command line starts).
"""

from __future__ import annotations


class Status:
    """What a long command is doing, on stderr: status lines, and a live line below them.

    Every :meth:`notify` message is printed as a line. In a terminal, from the first
    message on, a spinner line below repeats the latest one with the time it has taken,
    so a step that takes seconds (loading the model, reading files) never leaves the
    screen silent; :meth:`progress` adds a bar per step (texts done, texts per second,
    time left), shown from 0. Nothing live is drawn when stderr is not a terminal.
    Use it as a context manager: the live line is removed when the command is done.
    """

    def __init__(self):
        from qa.render import make_console

        self.console = make_console(stderr=True)
        self._live = None
        self._spinner = None
        self._bars: dict[str, object] = {}

    def __enter__(self) -> "Status":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the live line, if any (the printed status lines stay); a later message starts a new one."""
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._spinner = None
            self._bars.clear()

    def _display(self):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        if self._live is None:
            self._live = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._live.start()
        return self._live

    def notify(self, message: str) -> None:
        """Print one status line, dimmed (as plain text: it can hold paths and file names)."""
        from rich.text import Text

        from qa.terminal import one_line

        message = one_line(message)
        self.console.print(Text(message, style="dim"))
        if not self.console.is_terminal:
            return
        live = self._display()
        description = Text(message if len(message) <= 60 else message[:59] + "\u2026", style="dim")
        if self._spinner is None:
            self._spinner = live.add_task(description, total=None, detail="")
        else:
            live.reset(self._spinner, description=description, total=None, detail="")

    def progress(self, done: int, total: int, step: str = "embedding") -> None:
        """Show a bar for ``step``: ``done`` of ``total`` texts (or files), the rate and the time left."""
        if not self.console.is_terminal:
            return
        live = self._display()
        if step not in self._bars:
            self._bars[step] = live.add_task(step, total=total, detail="")
        task_id = self._bars[step]
        live.update(task_id, completed=done, total=total)
        task = live.tasks[[t.id for t in live.tasks].index(task_id)]
        detail = f"{done}/{total}"
        if task.speed:
            detail += f"  {task.speed:.1f}/s"
        if task.time_remaining is not None and done < total:
            detail += f"  {int(task.time_remaining) // 60}:{int(task.time_remaining) % 60:02d} left"
        live.update(task_id, detail=detail)
        if done >= total:
            live.remove_task(task_id)
            del self._bars[step]
