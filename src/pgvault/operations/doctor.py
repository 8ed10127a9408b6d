"""Health checks for ``pgvault doctor``: tools, catalog, storage, configured databases,
restores left unfinished, and the privacy of what pgvault wrote.

The catalog is opened the way every start opens it (:func:`pgvault.operations.startup
.recover` repairs what dead processes left first); what could not be repaired is reported:
an unfinished restore whose server cannot be reached, and any database that refuses
connections because of pgvault (a live or previous database a swap left closed).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pgvault import databases, storage
from pgvault.backups.plan import gzip_only_note
from pgvault.catalog import Catalog
from pgvault.catalog import journal as journal_rows
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.operations import startup
from pgvault.postgres import server, tools
from pgvault.restores import repair
from pgvault.restores.steps import PRE_RESTORE_MARK, SCRATCH_MARK

MAX_REPORTED = 5


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
    opened: list[Catalog] = []
    checks.append(_guard("catalog", partial(_open_catalog, settings, opened)))
    targets = {settings.default_storage_location, *settings.storage_targets}
    for name in sorted(targets):
        checks.append(_guard(f"storage {name}", partial(_storage_check, settings, name)))
    for name in sorted(settings.databases):
        checks.append(_guard(f"database {name}", partial(_database_check, settings, name)))
    if opened:
        checks.append(_guard("restores", partial(_restores_check, settings, opened[0])))
    checks.append(_guard("private files", partial(_privacy_check, settings)))
    return checks


def _open_catalog(settings: Settings, opened: list[Catalog]) -> str:
    catalog = Catalog.open(settings.catalog_location)
    startup.recover(settings, catalog)
    opened.append(catalog)
    return catalog.describe()


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


def _restores_check(settings: Settings, catalog: Catalog) -> str:
    """Unfinished restores a start could not repair, and databases closed by pgvault.

    Raises:
        PgvaultError: any found (the message lists them).
    """
    problems = [
        f"restore {entry.id} of {entry.dbname or entry.scratch} on {entry.server} is "
        f"unfinished (step {entry.step}): its server could not be reached to repair it"
        for entry in repair.stuck(settings, catalog)
    ]
    problems += [
        f"{name} on {where} refuses connections (left closed by a pgvault restore)"
        for where, name in _closed_databases(settings, catalog)
    ]
    if problems:
        more = f" (and {len(problems) - MAX_REPORTED} more)" * (len(problems) > MAX_REPORTED)
        raise PgvaultError("; ".join(problems[:MAX_REPORTED]) + more)
    return "no unfinished restore; no database closed by pgvault"


def _closed_databases(settings: Settings, catalog: Catalog) -> Iterator[tuple[str, str]]:
    """``(server, name)`` of databases that refuse connections and are pgvault's: a name a
    journal row knows, or one with pgvault's marks (configured databases' servers)."""
    seen: set[str] = set()
    for name in sorted(settings.databases):
        try:
            info = databases.from_config(settings, name).conn
            where = info.with_dbname("postgres").display().rsplit("/", 1)[0]
            if where in seen:
                continue
            seen.add(where)
            known = journal_rows.live_names(catalog, where)
            with server.connect(info.with_dbname("postgres")) as conn:
                rows = conn.execute(
                    "SELECT datname FROM pg_database WHERE NOT datallowconn AND NOT datistemplate"
                ).fetchall()
        except PgvaultError:
            continue  # the database check reports an unreachable server
        for (closed,) in rows:
            text = str(closed)
            if text in known or PRE_RESTORE_MARK in text or SCRATCH_MARK in text:
                yield where, text


def _privacy_check(settings: Settings) -> str:
    """Files under PGVAULT_HOME and local storage targets that others may read.

    Raises:
        PgvaultError: some are readable or writable by group or others (lists a few).
    """
    roots = [settings.home.absolute()]
    for name in {settings.default_storage_location, *settings.storage_targets}:
        try:
            store = storage.resolve(settings, name)
        except PgvaultError:
            continue
        root = getattr(store, "root", None)
        if isinstance(root, Path):
            roots.append(root)
    exposed: list[Path] = []
    checked = 0
    for root in dict.fromkeys(roots):
        for path in _walk(root):
            checked += 1
            if stat.S_IMODE(path.lstat().st_mode) & 0o077:
                exposed.append(path)
    if exposed:
        shown = ", ".join(str(p) for p in exposed[:MAX_REPORTED])
        raise PgvaultError(
            f"{len(exposed)} files or directories are readable by other users ({shown}): "
            "chmod them 0600 (directories 0700)"
        )
    return f"{checked} files and directories are private (0600/0700)"


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            if not path.is_symlink():
                yield path
