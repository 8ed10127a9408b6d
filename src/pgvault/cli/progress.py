"""Progress on stderr: rich bars in a terminal, one line per phase otherwise.

Takes the domain's :class:`~pgvault.progress.ProgressEvent` s. In a terminal a bar shows the
phase, percent, bytes (or TOC entries) of the (estimated) total, rate and time left; a step
(a restore's phase) is printed above it. Elsewhere (logs, pipes, CI) each phase gets one
line when it starts, and one with its figures when it ends.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

from pgvault.cli import render
from pgvault.cli.render import info, size
from pgvault.progress import Meter, ProgressEvent

if TYPE_CHECKING:  # rich's bars are imported when a terminal shows them
    from rich.progress import Progress, TaskID


class BytesProgress:
    """Shows a backup's, restore's or download's progress (use as a context manager; pass
    :meth:`update` as the domain's ``progress=`` callback)."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._tty = enabled and sys.stderr.isatty()
        self._meter = Meter()
        self._last: ProgressEvent | None = None
        self._started = time.monotonic()
        self._bars: dict[str, Progress] = {}
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._unit: str | None = None

    def _bar(self, unit: str) -> Progress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        counts = MofNCompleteColumn() if unit == "entries" else DownloadColumn()
        speed = TextColumn("") if unit == "entries" else TransferSpeedColumn()
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            counts,
            speed,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=render.err,
            transient=True,
        )

    def update(self, event: ProgressEvent) -> None:
        """Show ``event`` (a new phase, a step, or numbers of the current phase)."""
        if not self._enabled:
            return
        if event.unit == "steps":
            self._end_phase()
            self._say(event.detail or event.phase)
            return
        if self._last is None or self._last.phase != event.phase:
            self._end_phase()
            self._start_phase(event)
        self._meter.update(event)
        self._last = event
        if self._tty and self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, description=event.phase, completed=event.done, total=event.total
            )

    def _say(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            info(line)

    def _start_phase(self, event: ProgressEvent) -> None:
        self._started = time.monotonic()
        if not self._tty:
            info(f"{event.phase} ...")
            return
        if self._progress is None or self._unit != event.unit:
            self._stop_bar()
            self._progress, self._unit = self._bar(event.unit), event.unit
            self._progress.start()
        self._task = self._progress.add_task(event.phase, total=event.total)

    def _end_phase(self) -> None:
        last = self._last
        self._last = None
        if last is None:
            return
        took = max(time.monotonic() - self._started, 1e-6)
        if self._tty:
            if self._progress is not None and self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
            return
        if last.unit == "bytes":
            info(
                f"{last.phase}: {size(last.done)} in {took:.1f} s ({size(int(last.done / took))}/s)"
            )
        else:
            shown = f"{last.done}/{last.total}" if last.total else str(last.done)
            info(f"{last.phase}: {shown} {last.unit} in {took:.1f} s")

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None

    def __enter__(self) -> BytesProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            if exc_type is None:
                self._end_phase()
            self._stop_bar()
