"""The console script's first code: the collector set for a short command
(:mod:`pgvault.cli.collector`), then :func:`pgvault.cli.app.run`.

Only this module and the collector's are imported before the thresholds change; the test
suite imports neither, so tests run with the interpreter's defaults.

It also sets ``PYDANTIC_DISABLE_PLUGINS=__all__`` unless the environment says otherwise:
pydantic otherwise scans every installed distribution's entry points for plugins on its
first model (about 7 ms of each command's start here), and pgvault uses none.
"""

from __future__ import annotations

import os

from pgvault.cli import collector


def run() -> None:
    """Console-script entry point: :func:`pgvault.cli.app.run` with the collector set for a
    short command; exits as it does."""
    collector.for_command()
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        from pgvault.cli.app import run as run_app

        run_app()
    finally:
        collector.before_exit()
