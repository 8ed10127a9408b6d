"""What every CLI command module shares: the settings on the Typer context, the catalog
(with interrupted backups recovered at open), the audit actor, and the ``--json`` option."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from pgvault.backups import run as backups
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the app callback loaded (``ctx.obj``)."""
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


def open_catalog(settings: Settings) -> Catalog:
    """Open the catalog and mark backups left running by a dead process ``interrupted``."""
    catalog = Catalog.open(settings.catalog_location)
    backups.recover_interrupted(settings, catalog)
    return catalog


def actor() -> str:
    """The audit log's actor of a CLI command: ``cli:<OS user>`` (``cli`` if unknown)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
