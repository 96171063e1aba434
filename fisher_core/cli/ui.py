"""What the command line prints: one JSON object or a summary and a table on stdout; progress
bars, logs and errors on stderr.

Error lines and JSON are written with :func:`typer.echo`, never through Rich, so that a long
message is never wrapped onto a second line.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["UI", "Bar", "jsonable", "one_line", "table"]


def one_line(text: object) -> str:
    """``text`` as a single line (runs of whitespace, newlines included, become one space)."""
    return " ".join(str(text).split())


def jsonable(value: Any) -> Any:
    """``value`` ready for strict JSON.

    Parameters
    ----------
    value : any
        Dicts, lists, tuples, numpy arrays and scalars, Python scalars, nested.

    Returns
    -------
    any
        The same structure with numpy values made Python ones and NaN/inf made None (strict
        JSON has no NaN).
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Bar:
    """One task of a Rich progress display, fed by the library's progress callbacks.

    Call it as ``bar(fraction, message)`` (the library's ``progress=`` convention) or pass
    :meth:`event` as a training loop's ``callback=``.
    """

    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def __call__(self, fraction: float, message: str = "") -> None:
        """Show ``fraction`` (0..1) done, with ``message`` next to the bar."""
        self._progress.update(self._task, total=1.0, completed=min(1.0, max(0.0, fraction)),
                              note=one_line(message))

    def event(self, event: Any) -> None:
        """Show a training :class:`~fisher_core.training.ProgressEvent`; each epoch is also
        logged as a line above the bar."""
        note = f"epoch {event.epoch}"
        if event.loss == event.loss:  # not NaN
            note += f" · loss {event.loss:.4g}"
        self._progress.update(self._task, total=max(event.total_steps, 1),
                              completed=event.step, note=note)
        if event.kind == "epoch":
            val = (f", held-out {event.bits_per_dim:.4g} bits/dim"
                   if event.bits_per_dim is not None else
                   f", held-out loss {event.val_nll:.4g}" if event.val_nll is not None else "")
            self._progress.console.print(f"  epoch {event.epoch}: loss {event.loss:.4g}{val}",
                                         markup=False, highlight=False)

    def log(self, message: str) -> None:
        """A line above the bar (stderr)."""
        self._progress.console.print(message, markup=False, highlight=False)


class UI:
    """Output of one command: JSON or human, progress on stderr.

    Parameters
    ----------
    json_mode : bool
        Print one JSON object on stdout instead of the summary and the table.
    """

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.err = Console(stderr=True, highlight=False)
        self.out = Console(highlight=False)

    @contextlib.contextmanager
    def progress(self, title: str, *, indeterminate: bool = False) -> Iterator[Bar]:
        """A progress bar on stderr for one long step; ``indeterminate`` for a step that
        reports nothing until it is done."""
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if not indeterminate:
            columns += [TaskProgressColumn(), TimeRemainingColumn()]
        columns += [TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
        with Progress(*columns, console=self.err) as progress:
            task = progress.add_task(title, total=None if indeterminate else 1.0, note="")
            yield Bar(progress, task)
            if not indeterminate:
                progress.update(task, completed=progress.tasks[0].total)

    def log(self, message: str) -> None:
        """A line on stderr (human notes that are not the result)."""
        typer.echo(message, err=True)

    def result(self, data: dict[str, Any], summary: str | Sequence[str] = "",
               table: Table | None = None) -> None:
        """Print the command's result on stdout.

        Parameters
        ----------
        data : dict
            Printed as one JSON object (one line) with ``--json``.
        summary : str or sequence of str
            Otherwise, these lines ...
        table : rich.table.Table, optional
            ... and this table.
        """
        if self.json_mode:
            typer.echo(json.dumps(jsonable(data), allow_nan=False))
            return
        for line in [summary] if isinstance(summary, str) else summary:
            if line:
                typer.echo(line)
        if table is not None:
            self.out.print(table)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A Rich table.

    Parameters
    ----------
    title : str or None
    columns : sequence of str
        Column headers.
    rows : sequence of sequences
        Cells: floats are shown with 4 significant digits, None and NaN as "–", lists of
        integers as a shape (``1×8×8``).

    Returns
    -------
    rich.table.Table
    """
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(_cell(v) for v in row))
    return t


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "×".join(map(str, v)) if all(isinstance(x, int) for x in v) else ", ".join(
            map(str, v))
    return str(v)
