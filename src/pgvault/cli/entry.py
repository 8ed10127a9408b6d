"""The console script's first code: the cyclic garbage collector set for a short command,
then :func:`pgvault.cli.app.run`.

A command imports large libraries (SQLAlchemy, pydantic, Typer, psycopg) and usually ends
soon after. At CPython's default thresholds the collector traverses their objects again and
again while they load, and once more at interpreter exit: about a quarter of the wall time
of ``pgvault list`` on this kind of machine (see ``bench/RESULTS.md``). So the youngest
generation's threshold is raised for the command (collections still run, just less
often), and everything is frozen (:func:`gc.freeze`) before exit so the last collection
skips it. Long-running commands (``serve``, ``scheduler run``) call :func:`serving`, which
puts the interpreter's own thresholds back. The idea is the one behind :func:`gc.freeze`'s
documentation (freeze before fork or exit to avoid needless traversals).

Only this module is imported before the thresholds change; the test suite never imports
it, so tests run with the interpreter's defaults.
"""

from __future__ import annotations

import gc

DEFAULTS = gc.get_threshold()
"""The interpreter's thresholds, as they were before :func:`run` changed them."""
COMMAND_THRESHOLDS = (50_000, 20, 100)
"""(generation 0 allocations, generation 1 and 2 collections) for a short command."""


def serving() -> None:
    """Put the interpreter's own collector thresholds back (a process that runs for days)."""
    gc.set_threshold(*DEFAULTS)


def run() -> None:
    """Console-script entry point: :func:`pgvault.cli.app.run` with the collector set for a
    short command; exits as it does."""
    gc.set_threshold(*COMMAND_THRESHOLDS)
    try:
        from pgvault.cli.app import run as run_app

        run_app()
    finally:
        gc.freeze()
