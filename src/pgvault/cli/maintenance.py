"""Maintenance commands: ``doctor`` (is everything pgvault needs there?) and
``catalog rebuild`` (the catalog again from the manifests in storage)."""

from __future__ import annotations

from typing import Annotated

import typer

from pgvault.cli import render
from pgvault.cli.common import JsonOpt, add_command, open_catalog, settings_of

catalog_app = typer.Typer(help="The catalog of backups.", no_args_is_help=True)


def doctor_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check tools, catalog, storage and configured databases. Exits 0 only if all is
    well."""
    from pgvault.operations import doctor

    checks = doctor.run_checks(settings_of(ctx))
    if as_json:
        render.as_json(checks)
    else:
        render.table(
            None,
            ("check", "ok", "detail"),
            ((c.name, "yes" if c.ok else "NO", c.detail) for c in checks),
        )
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@catalog_app.command("rebuild")
def catalog_rebuild(
    ctx: typer.Context,
    storage_name: Annotated[
        str | None, typer.Option("--storage", help="Storage target name or URL.")
    ] = None,
) -> None:
    """Rebuild the catalog from the manifests stored beside each backup."""
    from pgvault import backups, storage

    settings = settings_of(ctx)
    records = backups.rebuild_catalog(
        open_catalog(settings), storage.resolve(settings, storage_name)
    )
    where = storage_name or settings.default_storage_location
    render.info(f"catalog rebuilt: {len(records)} backups from {where}")


def register(app: typer.Typer) -> None:
    """Add ``doctor`` and ``catalog`` to ``app``."""
    add_command(app, "doctor", doctor_)
    app.add_typer(catalog_app, name="catalog")
