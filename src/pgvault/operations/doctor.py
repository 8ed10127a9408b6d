"""Health checks for ``pgvault doctor``: tools, catalog, storage, configured databases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from pgvault import databases, storage
from pgvault.backups.plan import gzip_only_note
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.postgres import server, tools


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it is fine, and the detail."""

    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in report order; never raises for a failed check."""
    checks = [_tool_check(program, settings) for program in tools.PROGRAMS]
    checks.append(_guard("compression", partial(_zstd_check, settings)))
    checks.append(_guard("catalog", lambda: Catalog.open(settings.catalog_location).describe()))
    targets = {settings.default_storage_location, *settings.storage_targets}
    for name in sorted(targets):
        checks.append(_guard(f"storage {name}", partial(_storage_check, settings, name)))
    for name in sorted(settings.databases):
        checks.append(_guard(f"database {name}", partial(_database_check, settings, name)))
    return checks


def _guard(name: str, probe: Callable[[], object]) -> Check:
    try:
        detail = probe()
    except PgvaultError as exc:
        return Check(name, False, str(exc))
    return Check(name, True, str(detail))


def _tool_check(program: str, settings: Settings) -> Check:
    try:
        found = tools.discover(program, settings.bin_dir)
    except PgvaultError as exc:
        return Check(program, False, str(exc))
    if not found:
        return Check(
            program,
            False,
            f"not found: install postgresql-client or set {tools.env_override_name(program)}",
        )
    return Check(program, True, ", ".join(f"{t.version} ({t.path})" for t in found))


def _zstd_check(settings: Settings) -> str:
    """Whether the newest pg_dump compresses with zstd (the fast default form); when not,
    the same note each backup logs at INFO (a slower default is not a failure)."""
    pg_dump = tools.choose("pg_dump", None, settings.bin_dir)
    if tools.supports_compression(pg_dump, "zstd"):
        return (
            f"pg_dump {pg_dump.version} compresses with zstd: default backups are custom "
            "archives with zstd:1 inside, restored with pg_restore -j straight from storage"
        )
    return "slower default: " + gzip_only_note(pg_dump)


def _storage_check(settings: Settings, name: str) -> str:
    store = storage.resolve(settings, name)
    store.check_writable()
    return f"{store.url} is writable"


def _database_check(settings: Settings, name: str) -> str:
    target = databases.from_config(settings, name)
    with server.connect(target.conn) as conn:
        major, version = server.server_version(conn)
    pg_dump = tools.choose("pg_dump", major, settings.bin_dir)
    codec = "zstd" if tools.supports_compression(pg_dump, "zstd") else "gzip only"
    return (
        f"{target.conn.display()}: PostgreSQL {version}; pg_dump {pg_dump.version} "
        f"({pg_dump.path}, {codec})"
    )
