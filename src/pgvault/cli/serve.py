"""``pgvault serve``, ``pgvault users ...``, ``pgvault tokens ...``, ``pgvault passkey-hash``.

Registered on the main app by :func:`register`. Passwords come from ``PGVAULT_PASSWORD``
or a prompt, never from argv; tokens are printed once. The service's libraries (the
``api`` extra) are imported only when these commands run.

``serve`` runs the API on uvicorn and the scheduler (:mod:`pgvault.operations.scheduler`)
in the same process: the scheduler starts before uvicorn and is shut down when uvicorn ends.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgvault import redact
from pgvault.cli import render
from pgvault.cli.common import actor as _actor
from pgvault.cli.common import add_command, open_catalog, settings_of
from pgvault.errors import ConfigError

if TYPE_CHECKING:
    from pgvault.catalog import Catalog
    from pgvault.config.settings import Settings
    from pgvault.operations.scheduler import Scheduler

log = logging.getLogger(__name__)

users_app = typer.Typer(help="Users of the pgvault service (kept in the catalog).")
tokens_app = typer.Typer(help="API tokens for scripts and CI.")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``users``, ``tokens`` and ``passkey-hash`` to the main command."""
    add_command(app, "serve", serve)
    add_command(app, "passkey-hash", passkey_hash)
    app.add_typer(users_app, name="users", no_args_is_help=True)
    app.add_typer(tokens_app, name="tokens", no_args_is_help=True)


def _catalog(ctx: typer.Context) -> Catalog:
    return open_catalog(settings_of(ctx))


def _audit(catalog: Catalog, action: str, target: str) -> None:
    """Record a CLI action in the audit trail (as ``cli:<os user>``)."""
    from pgvault.catalog import audit

    audit.record(catalog, actor=_actor(), action=action, target=target)


def _secret_from(env_name: str, prompt: str) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    if not sys.stdin.isatty():
        raise ConfigError(f"no terminal to ask on: set {env_name}")
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    dev: Annotated[
        bool, typer.Option("--dev", help="Allow a generated throwaway signing secret.")
    ] = False,
) -> None:
    """Run the API and the scheduler in one process."""
    import uvicorn

    from pgvault.api import create_app
    from pgvault.catalog import Catalog
    from pgvault.cli.collector import serving
    from pgvault.service.tokens import load_secret

    serving()  # runs for days: the collector's own thresholds (the app freezes its start-up)
    settings = settings_of(ctx)
    secret = load_secret(settings, dev=dev)
    if dev and settings.secret_key is None and settings.secret_key_file is None:
        render.info(
            "WARNING: DEVELOPMENT MODE: a throwaway signing secret was generated; every token dies "
            "with this process. Never run like this in production: set PGVAULT_SECRET_KEY."
        )
    catalog = Catalog.open(settings.catalog_location)
    app = create_app(settings, catalog=catalog, secret=secret, dev=dev)
    scheduler = _start_scheduler(settings, catalog)
    render.info(f"pgvault serving on http://{host}:{port} (docs at /docs)")
    config = uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=False)
    redact.install()  # after uvicorn set up its loggers: tokens and credentials masked
    try:
        uvicorn.Server(config).run()
    finally:
        scheduler.shutdown()


def _start_scheduler(settings: Settings, catalog: Catalog) -> Scheduler:
    """Start the scheduler of this service process (APScheduler threads)."""
    from pgvault.operations import scheduler

    log.info("starting the scheduler")
    return scheduler.start(settings, catalog)


def passkey_hash() -> None:
    """Print the hash of a restore passkey for the config. The passkey comes from
    PGVAULT_PASSKEY or a prompt; put the hash in restore_passkey_hash."""
    from pgvault import passwords

    hashed = passwords.hash_secret(_secret_from("PGVAULT_PASSKEY", "Restore passkey"))
    sys.stdout.write(hashed + "\n")


# --- users ---------------------------------------------------------------------------------


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    name: str,
    role: Annotated[str, typer.Option(help="viewer, operator, admin or owner.")] = "viewer",
) -> None:
    """Create a user; the password comes from PGVAULT_PASSWORD or a prompt."""
    from pgvault.service import users

    catalog = _catalog(ctx)
    password = _secret_from("PGVAULT_PASSWORD", f"Password for {name}")
    users.create(catalog, name, password, role, created_by=_actor())
    _audit(catalog, "cli users create", f"username={name}")
    render.info(f"user {name} created with role {role}")


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """List users."""
    from pgvault.service import users

    render.table(
        None,
        ("user", "role", "disabled", "created (UTC)", "created by"),
        (
            (
                u.username,
                u.role,
                "yes" if u.disabled else "",
                render.when(u.created_at),
                u.created_by,
            )
            for u in users.list_all(_catalog(ctx))
        ),
    )


def _change(ctx: typer.Context, name: str, action: str, **changes: Any) -> None:
    from pgvault.service import users

    catalog = _catalog(ctx)
    users.update(catalog, name, **changes)
    _audit(catalog, f"cli users {action}", f"username={name}")
    render.info(f"user {name}: {action} done")


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: str) -> None:
    """Disable a user (their sessions end at once)."""
    _change(ctx, name, "disable", disabled=True)


@users_app.command("enable")
def users_enable(ctx: typer.Context, name: str) -> None:
    """Enable a disabled user."""
    _change(ctx, name, "enable", disabled=False)


@users_app.command("set-role")
def users_set_role(ctx: typer.Context, name: str, role: str) -> None:
    """Change a user's role."""
    _change(ctx, name, "set-role", role=role)


@users_app.command("reset-password")
def users_reset_password(ctx: typer.Context, name: str) -> None:
    """Set a new password (PGVAULT_PASSWORD or a prompt); the user's sessions end."""
    password = _secret_from("PGVAULT_PASSWORD", f"New password for {name}")
    _change(ctx, name, "reset-password", password=password)


# --- tokens --------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What uses it, e.g. ci.")],
    role: Annotated[str, typer.Option(help="viewer, operator, admin or owner.")],
    expires_days: Annotated[int | None, typer.Option(help="Expire after N days.")] = None,
) -> None:
    """Create an API token and print it (only this once)."""
    from pgvault.service import tokens

    catalog = _catalog(ctx)
    plain, record = tokens.create_api_token(
        catalog, name, role, created_by=_actor(), expires_days=expires_days
    )
    _audit(catalog, "cli tokens create", f"token={record.id}")
    sys.stdout.write(plain + "\n")
    render.info(
        f"API token {record.id} ({name}, {role}) created: store it now, it is not shown again"
    )


@tokens_app.command("list")
def tokens_list(ctx: typer.Context) -> None:
    """List API tokens (never the tokens themselves)."""
    from pgvault.catalog import accounts

    render.table(
        None,
        ("id", "name", "role", "created (UTC)", "expires", "last used", "revoked"),
        (
            (
                t.id,
                t.name,
                t.role,
                render.when(t.created_at),
                render.when(t.expires_at),
                render.when(t.last_used_at),
                render.when(t.revoked_at),
            )
            for t in accounts.list_api_tokens(_catalog(ctx))
        ),
    )


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: str) -> None:
    """Revoke an API token at once."""
    from pgvault.service import tokens

    catalog = _catalog(ctx)
    tokens.revoke_api_token(catalog, token_id)
    _audit(catalog, "cli tokens revoke", f"token={token_id}")
    render.info(f"API token {token_id} revoked")
