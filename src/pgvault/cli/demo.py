"""``pgvault demo``: try pgvault on a throwaway server with a sample database, in one command
(and ``--serve``: the API on it too)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from pgvault.cli import render
from pgvault.cli.common import add_command, settings_of


def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the demo server running at the end.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Then run 'pgvault serve' on it, with a one-time password."),
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the service for --serve.")] = 8080,
) -> None:
    """Back up, verify and restore a sample database on a throwaway server. Shows pgvault's
    main job end to end on this machine, with no database of yours needed."""
    from pgvault.operations import demo as tour

    settings = settings_of(ctx)
    result, demo_settings = tour.run(settings.home, report=render.info, keep=keep or serve)
    home = result.home
    render.info("")
    render.info(f"the demo's backups stay listed: PGVAULT_HOME={home} pgvault list")
    render.info("the same against your own server:")
    render.info("  PGPASSWORD=... pgvault backup postgresql://user@host:5432/yourdb")
    render.info(
        "  pgvault restore latest --database yourdb --to postgresql://user@host/copy --dry-run"
    )
    pg = result.server
    try:
        if result.identical and serve:
            _serve(demo_settings, home, port)
    finally:
        if keep and pg is not None:
            render.info(
                f"demo server left running: {pg.url('pagila')} (password in "
                f"{pg.password_file}; stop it with: "
                f"kill -INT $(head -1 {pg.datadir}/postmaster.pid))"
            )
        result.finish(keep=keep)
    if not result.identical:
        raise typer.Exit(1)


def _serve(settings: object, home: Path, port: int) -> None:
    import uvicorn

    from pgvault.api import create_app
    from pgvault.catalog import Catalog
    from pgvault.config.settings import Settings
    from pgvault.service import users

    assert isinstance(settings, Settings)
    catalog = Catalog.open(settings.catalog_location)
    password = secrets.token_urlsafe(12)
    name = f"demo-{secrets.token_hex(2)}"
    users.create(catalog, name, password, "owner")
    render.info(f"service on http://127.0.0.1:{port}: sign in as {name} with {password} (once)")
    app = create_app(settings, catalog=catalog, secret=secrets.token_urlsafe(48))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    add_command(app, "demo", demo)
