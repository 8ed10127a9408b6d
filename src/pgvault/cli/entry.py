"""The console script's first code: the collector set for a short command
(:mod:`pgvault.cli.collector`), then :func:`pgvault.cli.app.run`.

Only this module and the collector's are imported before the thresholds change; the test
suite imports neither, so tests run with the interpreter's defaults.
"""

from __future__ import annotations

from pgvault.cli import collector


def run() -> None:
    """Console-script entry point: :func:`pgvault.cli.app.run` with the collector set for a
    short command; exits as it does."""
    collector.for_command()
    try:
        from pgvault.cli.app import run as run_app

        run_app()
    finally:
        collector.before_exit()
