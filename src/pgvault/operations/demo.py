"""``pgvault demo``: pgvault's main job end to end on what the install brings.

A throwaway PostgreSQL server from the bundled server binaries, the Pagila sample database
shipped in :mod:`pgvault.samples`, then what a user does on day one, each step reported with
its figures as it ends::

    start server -> load Pagila -> backup (default settings) -> verify --full
    -> restore preview (the plan --dry-run shows) -> swap restore into pagila_copy
    -> compare the two databases (tables, row counts, content checksums)

The demo has its own home (``<PGVAULT_HOME>/demo``: catalog and backups), so it never mixes
with real backups; its backups stay listed there after the server is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pgvault import backups, restores, samples
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings, load_settings
from pgvault.databases import DatabaseTarget, from_config
from pgvault.errors import ToolError, VerifyError
from pgvault.operations import verify
from pgvault.postgres import bundled, runner, server, tools
from pgvault.postgres.commands import psql_command
from pgvault.postgres.localserver import LocalServer

Report = Callable[[str], None]
"""Receives one line per finished step."""

SOURCE, COPY = "pagila", "pagila_copy"


@dataclass
class DemoResult:
    """What the demo did: its home, the backup, whether the copy is identical, and the
    server's address (``None`` once stopped)."""

    home: Path
    backup_id: str
    identical: bool
    tables: int
    rows: int
    differences: list[str] = field(default_factory=list)
    server: LocalServer | None = None

    def finish(self, *, keep: bool) -> None:
        """Stop the demo server and remove its files, or (``keep``) leave it running."""
        if self.server is None:
            return
        if keep:
            self.server.detach()
        else:
            self.server.stop()
            self.server.remove()
        self.server = None


def server_bin_dir(settings: Settings) -> Path:
    """Where the PostgreSQL server programs for the demo are: the bundled ones (see
    :func:`pgvault.postgres.bundled.server_bin_dir`), else the newest installed.

    Raises:
        ToolError: no ``initdb``/``postgres`` anywhere.
    """
    candidates = [bundled.server_bin_dir(), settings.bin_dir]
    candidates += [t.path.parent for t in tools.discover("pg_dump", settings.bin_dir)]
    for directory in candidates:
        if directory is not None and (directory / "initdb").is_file():
            return directory
    raise ToolError(
        "no PostgreSQL server programs (initdb, postgres) found: install pgvault with its "
        "'bundled-tools' extra"
    )


def _timed(report: Report, what: Callable[[], str]) -> None:
    started = time.monotonic()
    line = what()
    report(f"{line} ({time.monotonic() - started:.1f} s)")


def run(home: Path, *, report: Report, keep: bool = False) -> tuple[DemoResult, Settings]:
    """Run the whole demo under ``home / "demo"``. The server is stopped and its files
    removed at the end, unless ``keep``: then ``result.server`` is still running and
    :meth:`DemoResult.finish` ends it (or leaves it running for good).

    Returns:
        the result and the demo's settings (for a service started on them).

    Raises:
        ToolError: no server programs, or the server did not start.
        BackupError, RestoreError, VerifyError: a step failed (the server is removed).
    """
    demo_home = (home / "demo").absolute()
    demo_home.mkdir(parents=True, exist_ok=True)
    bindir = server_bin_dir(load_settings(home=demo_home))
    cluster_dir = demo_home / f"server-{int(time.time())}"
    pg: LocalServer | None = None
    try:
        started = time.monotonic()
        pg = LocalServer.create(bindir, cluster_dir)
        version = tools.probe("pg_dump", bindir / "pg_dump").version
        who = f" as OS user {pg.user.name} (PostgreSQL refuses root)" * (pg.user.uid is not None)
        report(
            f"started a throwaway PostgreSQL {version} server on 127.0.0.1:{pg.port}{who} "
            f"({time.monotonic() - started:.1f} s)"
        )
        result, settings = _tour(pg, bindir, demo_home, report)
        if keep:
            result.server, pg = pg, None
        return result, settings
    finally:
        if pg is not None:
            pg.stop()
            pg.remove()


def _tour(pg: LocalServer, bindir: Path, home: Path, report: Report) -> tuple[DemoResult, Settings]:
    settings = load_settings(
        home=home,
        databases={
            SOURCE: {"url": pg.url(SOURCE), "password_file": str(pg.password_file)},
            COPY: {"url": pg.url(COPY), "password_file": str(pg.password_file)},
        },
    )
    catalog = Catalog.open(settings.catalog_location)
    _timed(report, lambda: _load_pagila(pg, bindir))
    source = from_config(settings, SOURCE)
    record = backups.create(settings, catalog, backups.BackupRequest(target=source))
    form = f"{record.format}, {record.compression} by {record.compressed_by or 'nobody'}"
    report(
        f"backup {record.id}: {_size(record.size_bytes)} stored as {form} in "
        f"{record.duration_seconds:.1f} s -> {record.storage_key}"
    )
    _timed(report, lambda: _verify(settings, catalog, record.id, source))
    copy = from_config(settings, COPY)
    request = restores.RestoreRequest(target=copy, backup_id=record.id, confirm=COPY)
    plan = restores.plan(settings, catalog, request)
    preview = plan.preview
    report(
        f"restore preview: {sum(preview.objects.values())} objects "
        f"({preview.objects.get('TABLE', 0)} tables), rows of {len(preview.tables)} tables "
        f"recorded at backup time; into {preview.dbname} ({preview.mode} mode, target exists: "
        f"{preview.target_exists}); guards: {'; '.join(preview.guards)}"
    )
    done = restores.run(settings, catalog, plan)
    report(f"swap restore into {COPY}: done in {done.duration_seconds:.1f} s")
    result = _compare(pg, home, record.id)
    verdict = "identical" if result.identical else "DIFFERENT: " + "; ".join(result.differences)
    report(
        f"compared {SOURCE} and {COPY}: {result.tables} tables, {result.rows} rows, "
        f"content checksums: {verdict}"
    )
    return result, settings


def _load_pagila(pg: LocalServer, bindir: Path) -> str:
    with server.connect(pg.conninfo()) as conn:
        server.create_database_like(conn, SOURCE, None)
    sample = samples.pagila_dir()
    target = pg.conninfo(SOURCE)
    for name in ("pagila-schema.sql", "pagila-data.sql"):  # our own files, not user input
        argv = psql_command(bindir / "psql", target.dsn(), file=sample / name)
        runner.run(argv, env=target.child_env(), timeout=600)
    with server.connect(target) as conn:
        rows = sum(server.count_rows(conn, server.user_tables(conn)).values())
    return f"loaded the Pagila sample database ({rows} rows; licence: {sample / 'LICENSE.txt'})"


def _verify(settings: Settings, catalog: Catalog, backup_id: str, source: DatabaseTarget) -> str:
    result = verify.verify(settings, catalog, backup_id, full=True, server_conn=source.conn)
    if not result.ok:
        raise VerifyError(f"verify --full of {backup_id} failed: {result.detail}")
    return f"verify --full: {result.detail}"


def _compare(pg: LocalServer, home: Path, backup_id: str) -> DemoResult:
    with server.connect(pg.conninfo(SOURCE)) as conn:
        before = server.table_checksums(conn)
    with server.connect(pg.conninfo(COPY)) as conn:
        after = server.table_checksums(conn)
    differences = [
        f"{name}: {before.get(name)} vs {after.get(name)}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
    return DemoResult(
        home=home,
        backup_id=backup_id,
        identical=not differences,
        tables=len(before),
        rows=sum(count for count, _ in before.values()),
        differences=differences[:3],
    )


def _size(num: int | None) -> str:
    value = float(num or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    return str(num)
