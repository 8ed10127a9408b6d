"""The CLI's output layer: rich tables, JSON, sizes. The only place that prints.

``out`` and ``err`` (rich consoles on stdout and stderr) are made on first use, so a
command that prints nothing through rich never imports it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    out: Console
    err: Console


@cache
def console(stderr: bool = False) -> Console:
    """The rich console on stdout (or stderr), made once."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns; give them room.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 160)


def __getattr__(name: str) -> Any:
    """``out`` and ``err``: the consoles of :func:`console`."""
    if name in ("out", "err"):
        return console(stderr=name == "err")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def size(num: int | None) -> str:
    """Bytes as ``12.3 MiB``."""
    if num is None:
        return "-"
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(num)


def when(value: datetime | None) -> str:
    """A UTC time as ``2026-11-21 05:30:12Z``."""
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}Z"


def local_and_utc(value: datetime, timezone: str) -> str:
    """An aware time in ``timezone`` with UTC beside it: ``2026-12-02 02:00 IST (20:30Z)``."""
    from zoneinfo import ZoneInfo

    local = value.astimezone(ZoneInfo(timezone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({value.astimezone(UTC):%H:%M}Z)"


def as_json(value: Any) -> None:
    """Print a model, dataclass-like dict or list of them as JSON on stdout."""
    from pydantic import BaseModel

    def plain(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json")
        if isinstance(item, datetime):
            return item.isoformat()
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [plain(v) for v in item]
        if hasattr(item, "__dataclass_fields__"):
            return {k: plain(getattr(item, k)) for k in item.__dataclass_fields__}
        return item

    sys.stdout.write(json.dumps(plain(value), indent=2) + "\n")


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """Print a table: a rich one on a terminal; off a terminal (a pipe, a file, CI logs)
    plain aligned columns, two spaces apart under a header line, as ``ps`` and
    ``docker ps`` print them: as easy to ``grep``/``awk`` as to read, and a few hundred
    rows print in milliseconds where rich lays them out for a second."""
    header = list(columns)
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    if not sys.stdout.isatty():
        _plain_table(title, header, cells)
        return
    from rich.table import Table

    grid = Table(title=title, show_lines=False)
    for column in header:
        grid.add_column(column, overflow="fold")
    for row in cells:
        grid.add_row(*row)
    console().print(grid)


def _plain_table(title: str | None, header: list[str], cells: list[list[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = [title] if title else []
    for row in [header, *cells]:
        padded = [value.ljust(width) for value, width in zip(row, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def error(message: str) -> None:
    """The one-line error every failure ends with (plain text off a terminal)."""
    if not sys.stderr.isatty():
        _plain_line(f"error: {message}")
        return
    from rich.markup import escape

    line = f"[bold red]error:[/] {escape(message)}"
    console(stderr=True).print(line, markup=True, soft_wrap=True)


def info(message: str) -> None:
    """A line of progress or result for humans (stderr, so stdout stays parseable); plain
    text off a terminal, so a script's or a cron job's run never loads rich for it."""
    if not sys.stderr.isatty():
        _plain_line(message)
        return
    console(stderr=True).print(message, markup=False, soft_wrap=True)


def _plain_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
