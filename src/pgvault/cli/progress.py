"""A rich progress display of bytes and rate, on stderr."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from pgvault.cli.render import err


class BytesProgress:
    """Shows "phase  bytes  rate  elapsed" while a backup or restore runs."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled and err.is_terminal
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self._task: TaskID | None = None

    def update(self, phase: str, done: int) -> None:
        """Report ``done`` bytes in ``phase``."""
        if not self._enabled:
            return
        if self._task is None:
            self._task = self._progress.add_task(phase, total=None)
        self._progress.update(self._task, description=phase, completed=done)

    def __enter__(self) -> BytesProgress:
        if self._enabled:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            self._progress.stop()
