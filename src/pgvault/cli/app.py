"""The ``pgvault`` command: global options, the commands in the order people use them, and
the one place errors end.

Each command module parses its options, calls one domain function and renders the answer;
none holds backup or restore logic. A :class:`~pgvault.errors.PgvaultError` ends in
:func:`run` as one line on stderr and the exit code of its class
(:data:`pgvault.errors.EXIT_CODES`).

Nothing here or in the command modules imports the domain, the catalog or the settings at
import time: ``--help`` and ``--version`` load only Typer, and each command what it uses.
Likewise Typer builds the click command (every parameter's annotations evaluated, a pydantic
adapter per parameter) only of the command a command line names (:func:`command_for`).
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from pgvault import __version__, redact
from pgvault.cli import backups, demo, maintenance, ops, render, restores, serve, wal
from pgvault.cli import files as files_cli
from pgvault.errors import PgvaultError, exit_code

app = typer.Typer(
    help="PostgreSQL backups you can restore: streaming pg_dump, a catalog, safe restores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"pgvault {__version__}\n")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Config file (default: $PGVAULT_CONFIG, ./pgvault.toml)."),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log more: -v info, -vv debug (a counter: repeat it, it takes no value).",
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """PostgreSQL backups you can restore."""
    from pgvault.config.settings import load_settings

    os.umask(0o077)  # what pgvault and its children write is private (0600/0700)
    level = logging.WARNING - 10 * min(verbose, 2)
    fmt = "%(asctime)s " if verbose else ""
    logging.basicConfig(level=level, format=fmt + "%(levelname)s %(name)s: %(message)s")
    redact.install()  # no credential in any line, botocore's debug lines included
    ctx.obj = load_settings(config)


backups.register(app)  # backup, list, show, verify, download, delete, stats
restores.register(app)  # restore (registered second: see the order below)
ops.register(app)  # history, health, prune, schedules, scheduler
maintenance.register(app)  # doctor, catalog rebuild
serve.register(app)  # serve, users, tokens, passkey-hash
demo.register(app)  # demo
wal.register(app)  # wal stream|push|fetch|status|mark|backups|window|verify|prune
app.add_typer(
    files_cli.app, name="files", short_help="Snapshots of an app's uploaded files, with its backups"
)

ORDER = (
    "demo backup restore list show verify download delete files wal stats history health "
    "prune schedules doctor catalog serve scheduler users tokens passkey-hash"
).split()
"""The order ``pgvault --help`` lists commands in: the everyday ones first, then
unattended operation, maintenance and the service. Commands not named here follow."""


class _Ordered(typer.core.TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        names = list(self.commands)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app.info.cls = _Ordered


HINTS = {
    "identity": "--identity FILE or PGVAULT_AGE_IDENTITY_FILE",
    "database": "check --database",
    "target": "--to URL or --database NAME",
    "storage": "--storage NAME",
    "config": "--config FILE",
    "backup": "'pgvault list' shows the backups",
    "server": "--to URL",
    "superuser": "--as-superuser, from the command line only",
}
"""The CLI's words for what an error :attr:`~pgvault.errors.PgvaultError.needs`."""


GLOBAL_VALUES = ("--config",)
"""Global options of :func:`main` that take a value (the rest are flags)."""


def _named(argv: list[str]) -> str | None:
    """The command a command line names after the global options, or None (none named,
    ``--help``, ``--version`` or an option the main command does not have)."""
    words = iter(argv)
    for word in words:
        if word in GLOBAL_VALUES:
            next(words, None)
        elif word.startswith(tuple(f"{name}=" for name in GLOBAL_VALUES)):
            continue
        elif word == "--verbose" or (len(word) > 1 and word == "-" + "v" * (len(word) - 1)):
            continue
        elif word.startswith("-"):
            return None
        else:
            return word
    return None


def command_for(argv: list[str]) -> typer.Typer:
    """``app`` holding only the command (or command group) that ``argv`` (the arguments
    after the program name) names, so Typer builds that one; the whole ``app`` when argv
    names none or a name it does not have (``pgvault --help`` lists every command, and a
    mistyped name gets click's own message). Building every command costs tens of
    milliseconds of each command's start (measured in ``bench/RESULTS.md``, issue 15)."""
    name = _named(argv)
    commands = [
        c
        for c in app.registered_commands
        if (c.name or typer.main.get_command_name(getattr(c.callback, "__name__", ""))) == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or not (commands or groups):
        return app
    only = copy.copy(app)  # the same callback, options and group class; fewer commands
    only.registered_commands, only.registered_groups = commands, groups
    return only


def run() -> NoReturn:
    """Console-script entry point: click/typer handle usage errors (exit 2) and --help; a
    PgvaultError becomes one line on stderr and its class's exit code."""
    try:
        command_for(sys.argv[1:])()  # standalone mode: ends with SystemExit
    except PgvaultError as exc:
        hint = HINTS.get(exc.needs or "")
        render.error(f"{exc} ({hint})" if hint else str(exc))
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(130)
    sys.exit(0)
