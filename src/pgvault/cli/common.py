"""What every CLI command module shares: the settings on the Typer context, the catalog
(with what dead processes left repaired at open), the audit actor, the ``--json`` and
``--identity`` options.

Command modules import the domain inside their command functions (and types under
``TYPE_CHECKING``), so ``pgvault --help`` and each command load only what they use.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pgvault.catalog import Catalog
    from pgvault.config.settings import Settings
    from pgvault.dumps.encryption import Decryptor

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
IdentityOpt = Annotated[
    Path | None,
    typer.Option("--identity", help="age identity file (default: PGVAULT_AGE_IDENTITY_FILE)."),
]


def add_command(app: typer.Typer, name: str, function: Callable[..., None]) -> None:
    """Register ``function`` as ``name``, its summary in ``--help`` being the first sentence
    of its docstring (click would cut it at 45 characters)."""
    doc = " ".join((function.__doc__ or "").split())
    summary = re.split(r"(?<=\.)\s", doc, maxsplit=1)[0].rstrip(".")
    app.command(name, short_help=summary)(function)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the app callback loaded (``ctx.obj``)."""
    from pgvault.config.settings import Settings

    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


def open_catalog(settings: Settings) -> Catalog:
    """Open the catalog and repair what dead processes left (interrupted backups, unfinished
    swaps, work directories: :func:`pgvault.operations.startup.recover`)."""
    from pgvault.catalog import Catalog
    from pgvault.operations import startup

    catalog = Catalog.open(settings.catalog_location)
    startup.recover(settings, catalog)
    return catalog


def decryptor(settings: Settings, identity: Path | None) -> Decryptor | None:
    """The age identities of ``--identity`` (else the configured identity file), if any."""
    from pgvault.dumps.encryption import decryptor_from

    return decryptor_from(identity or settings.age_identity_file)


def actor() -> str:
    """The audit log's actor of a CLI command: ``cli:<OS user>`` (``cli`` if unknown)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
