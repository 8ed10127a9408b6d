"""Point-in-time recovery tests: a source cluster with a replication role, a pgvault home
configured with ``pitr = true``, a WAL stream running in a thread, and rows stamped with
``clock_timestamp()`` to recover to.

The source cluster runs with ``wal_level = replica`` (also the default), ``summarize_wal =
on`` from PostgreSQL 17 (for incremental backups), and a role ``backup`` with
``REPLICATION`` (initdb's pg_hba.conf already has the ``host replication all 127.0.0.1/32``
line) that may read every table and create restore points, as the README tells users to set
up. As root, recovered servers run as the tests' server user (``server_os_user``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.config.settings import Settings, load_settings
from pgvault.databases import DatabaseTarget, from_config
from pgvault.physical import cluster as cluster_mod
from pgvault.physical.receiver import StreamOptions, WalStream
from support.osuser import ensure_traversable, server_user
from support.pgcluster import PgCluster
from support.vault import PGVAULT

BACKUP_ROLE = "backup"
BACKUP_PASSWORD = "backup-role-secret"
WAIT_SECONDS = 60.0


def start_source(bindir: Path, workdir: Path) -> PgCluster:
    """A cluster ready for streaming and base backups, with the ``backup`` role."""
    cluster = PgCluster.start(bindir, workdir)
    if cluster.major >= 17:
        cluster.psql("ALTER SYSTEM SET summarize_wal = on")
        cluster.psql("SELECT pg_reload_conf()")
    cluster.psql(
        f"CREATE ROLE {BACKUP_ROLE} LOGIN REPLICATION PASSWORD '{BACKUP_PASSWORD}';\n"
        f"GRANT pg_read_all_data TO {BACKUP_ROLE};"
    )
    return cluster


def allow_marks(cluster: PgCluster, dbname: str) -> None:
    """Let the backup role create restore points when connected to ``dbname`` (function
    privileges live in each database)."""
    cluster.psql(
        f"GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO {BACKUP_ROLE}", dbname=dbname
    )


def server_settings() -> dict[str, Any]:
    """``server_os_user`` for recovered servers when the tests run as root."""
    return {"server_os_user": server_user().name} if os.geteuid() == 0 else {}


@dataclass
class Pitr:
    """One test's pgvault configured to archive ``cluster``'s database ``dbname``."""

    cluster: PgCluster
    home: Path
    settings: Settings
    catalog: Catalog
    name: str
    dbname: str
    work: Path
    streams: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    @property
    def target(self) -> DatabaseTarget:
        """The configured database (as the ``backup`` role, password kept aside)."""
        return from_config(self.settings, self.name)

    def url(self) -> str:
        """The database's URL as the backup role (no password: it is in PGPASSWORD)."""
        return self.cluster.url(self.dbname, user=BACKUP_ROLE)

    def config_toml(self, **extra: str) -> str:
        """A pgvault.toml for the CLI with the same database entry."""
        lines = [f"[databases.{self.name}]", f'url = "{self.url()}"', "pitr = true"]
        lines += [f"{k} = {v}" for k, v in extra.items()]
        if self.settings.server_os_user:
            lines.insert(0, f'server_os_user = "{self.settings.server_os_user}"')
        return "\n".join(lines) + "\n"

    def cli_env(self) -> dict[str, str]:
        """Environment of a ``pgvault`` child: PGVAULT_HOME and the backup role's password."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGVAULT_HOME=str(self.home), PGPASSWORD=BACKUP_PASSWORD)
        return env

    def cli(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``pgvault *args`` with this home and its ``pgvault.toml`` (written first);
        ``env`` adds variables (e.g. the PGPASSWORD of a ``--to`` URL)."""
        (self.home / "pgvault.toml").write_text(self.config_toml())
        return subprocess.run(
            [str(PGVAULT), *args],
            capture_output=True,
            text=True,
            env={**self.cli_env(), **env},
            cwd=self.home,
            timeout=timeout,
            check=False,
        )

    def start_stream(self) -> None:
        """Run a :class:`WalStream` in a thread until :meth:`stop_streams`."""
        cancel = threading.Event()
        stream = WalStream(
            self.settings,
            self.catalog,
            self.target,
            cancel=cancel,
            options=StreamOptions(poll_seconds=0.2, heartbeat_seconds=1.0),
        )
        thread = threading.Thread(target=stream.run, name="test-wal-stream", daemon=True)
        thread.start()
        self.streams.append((thread, cancel))
        self.wait_for(lambda: self._streaming(), "the stream to start")

    def _streaming(self) -> bool:
        state = rows.get_stream(self.catalog, self.name)
        return state is not None and state.status == "streaming"

    def stop_streams(self) -> None:
        """Stop every stream thread this test started."""
        for thread, cancel in self.streams:
            cancel.set()
            thread.join(60)
        self.streams.clear()

    def sql(self, query: str) -> str:
        """Run SQL in the database as the superuser."""
        return self.cluster.psql(query, dbname=self.dbname)

    def switch_and_wait(self) -> str:
        """``pg_switch_wal()`` and wait until the finished segment is in the archive."""
        name = self.cluster.psql(
            "SELECT pg_logical_emit_message(false, 'pgvault-test', 'switch');\n"
            "SELECT pg_walfile_name(pg_switch_wal())"
        ).splitlines()[-1]
        self.wait_for(lambda: self.archived(name), f"WAL segment {name} to be archived")
        return name

    def archived(self, name: str) -> bool:
        """Whether the catalog has the WAL file ``name`` of this database."""
        return any(r.name == name for r in rows.segments(self.catalog, database=self.name))

    def wait_for(self, check: Any, what: str, seconds: float = WAIT_SECONDS) -> None:
        """Poll ``check()`` until true (an event, not a duration, ends the wait)."""
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                tail = self.cluster._log_tail(15)
                raise AssertionError(f"timed out waiting for {what}; server log:\n{tail}")
            time.sleep(0.1)

    def drop_slot(self) -> None:
        """Drop this test's replication slot so the shared server keeps no WAL for it."""
        self.cluster.psql(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = 'pgvault_{self.name}' AND NOT active"
        )


def make_pitr(cluster: PgCluster, dbname: str, **extra: Any) -> Pitr:
    """A pgvault home with ``[databases.<name>]`` for ``dbname``, in a fresh directory under
    /tmp that the server user can search (pytest's ``/tmp/pytest-of-root`` is 0700 and is
    reset to it by every pytest session that starts on this machine)."""
    work = Path(tempfile.mkdtemp(prefix="pgv-pitr-"))
    work.chmod(0o711)
    ensure_traversable(work)
    name = f"app{secrets.token_hex(3)}"
    home = work / "home"
    secret = work / "backup.pass"
    secret.write_text(BACKUP_PASSWORD + "\n")
    secret.chmod(0o600)
    db = {
        "url": cluster.url(dbname, user=BACKUP_ROLE),
        "pitr": True,
        "password_file": secret,
        **extra.pop("db", {}),
    }
    settings = load_settings(home=home, databases={name: db}, **server_settings(), **extra)
    catalog = Catalog.open(settings.catalog_location)
    return Pitr(cluster, home, settings, catalog, name, dbname, work)


@contextmanager
def pitr_env(cluster: PgCluster, dbname: str, **extra: Any) -> Iterator[Pitr]:
    """:func:`make_pitr`, with streams stopped, the slot dropped and the directory removed
    afterwards."""
    env = make_pitr(cluster, dbname, **extra)
    try:
        yield env
    finally:
        env.stop_streams()
        env.drop_slot()
        env.catalog.engine.dispose()
        shutil.rmtree(env.work, ignore_errors=True)


def query(cluster: PgCluster, port: int, dbname: str, sql: str) -> str:
    """Run ``sql`` on a recovered server on ``port`` (same roles and passwords as its
    source ``cluster``); unaligned, tuples only."""
    env = {**cluster.env(), "PGPORT": str(port)}
    done = subprocess.run(
        [str(cluster.bindir / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def stop_recovered(settings: Settings, datadir: Path, major: int) -> None:
    """Stop a server pgvault left running on ``datadir`` (``--into``)."""
    account = cluster_mod.server_account(settings)
    cluster_mod.Server(datadir, major, datadir / "log" / "stop.log", account).stop()


STAMPS = "CREATE TABLE stamps (id serial PRIMARY KEY, batch int, at timestamptz, note text)"


def insert_batch(env: Pitr, batch: int, rows_: int = 50) -> None:
    """``rows_`` rows stamped with ``clock_timestamp()`` in one transaction."""
    env.sql(
        f"INSERT INTO stamps (batch, at, note) SELECT {batch}, clock_timestamp(), "
        f"repeat('x', 100) FROM generate_series(1, {rows_})"
    )


def server_now(cluster: PgCluster) -> datetime:
    """The server's ``clock_timestamp()`` as an aware datetime."""
    return datetime.fromisoformat(cluster.psql("SELECT clock_timestamp()"))
