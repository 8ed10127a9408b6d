"""CPython's cyclic garbage collector, set for a short command or for a service.

A command imports large libraries (SQLAlchemy, pydantic, Typer, psycopg) and usually ends
soon after. At CPython's default thresholds the collector traverses their objects again and
again while they load, and once more at interpreter exit: about a quarter of the wall time
of ``pgvault list`` on this kind of machine (0.47 s against 0.39 s with 100,000 backups).
So :func:`for_command` raises the youngest generation's threshold (collections still run,
less often) and :func:`before_exit` freezes everything (:func:`gc.freeze`) so the last
collection skips it: the use its documentation gives (freeze to avoid needless
collections). Long-running commands (``serve``, ``scheduler``) call :func:`serving`, which
puts the interpreter's own thresholds back.
"""

from __future__ import annotations

import gc

DEFAULTS = gc.get_threshold()
"""The interpreter's thresholds, read when this module is first imported (by
:mod:`pgvault.cli.entry`, before it changes them)."""
COMMAND_THRESHOLDS = (50_000, 20, 100)
"""(generation 0 allocations, generation 1 and 2 collections) for a short command."""


def for_command() -> None:
    """Collect less often: a command that ends in seconds."""
    gc.set_threshold(*COMMAND_THRESHOLDS)


def serving() -> None:
    """Put the interpreter's own collector thresholds back (a process that runs for days)."""
    gc.set_threshold(*DEFAULTS)


def before_exit() -> None:
    """Freeze every object, so the collection at interpreter exit traverses none of them."""
    gc.freeze()
