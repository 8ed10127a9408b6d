"""A pgvault home for one integration test: settings, catalog, targets and the CLI.

Everything runs for real: the Python API in-process, the ``pgvault`` console script as a
child process with the password only in its environment (``PGPASSWORD``), never on argv.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pgvault import databases
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings, load_settings
from pgvault.databases import DatabaseTarget
from support.pgcluster import PgCluster

PGVAULT = Path(sys.executable).with_name("pgvault")
CLI_TIMEOUT = 300.0  # seconds for one pgvault command


def unique_name(prefix: str = "t") -> str:
    """A database name no other test uses: ``<prefix>_<hex>``."""
    return f"{prefix}_{secrets.token_hex(4)}"


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus inherited ``PG*`` (also ``PGVAULT_*``) variables."""
    return {k: v for k, v in (base or os.environ).items() if not k.startswith("PG")}


@dataclass
class Vault:
    """One test's pgvault: ``home`` (PGVAULT_HOME), its settings and its catalog."""

    home: Path
    settings: Settings
    catalog: Catalog

    @classmethod
    def open(cls, home: Path, **overrides: object) -> Vault:
        """Settings with ``home`` (and ``overrides``), and the catalog under it."""
        settings = load_settings(home=home, **overrides)
        return cls(home, settings, Catalog.open(settings.catalog_location))

    def reopen_catalog(self) -> Catalog:
        """Drop pooled connections and open the catalog again (after another process wrote)."""
        self.catalog.engine.dispose()
        self.catalog = Catalog.open(self.settings.catalog_location)
        return self.catalog

    def close(self) -> None:
        """Close the catalog's pooled connections."""
        self.catalog.engine.dispose()

    def target(self, cluster: PgCluster, dbname: str) -> DatabaseTarget:
        """The database ``dbname`` of ``cluster`` as a pgvault target (password kept aside)."""
        return databases.from_url(self.settings, cluster.url(dbname, with_password=True))

    @property
    def backups_dir(self) -> Path:
        """The default local storage directory (``<home>/backups``)."""
        return Path(self.settings.default_storage_location)

    def stored(self, record: BackupRecord) -> Path:
        """The local file holding a backup's object."""
        return self.backups_dir / record.storage_key

    def stored_files(self) -> list[Path]:
        """Every file under the storage directory (partials included), sorted."""
        if not self.backups_dir.exists():
            return []
        return sorted(p for p in self.backups_dir.rglob("*") if p.is_file())

    def cli_env(self, cluster: PgCluster | None = None, **extra: str) -> dict[str, str]:
        """Environment for the ``pgvault`` child: PGVAULT_HOME, and the cluster's PG* vars."""
        env = cluster.env() if cluster is not None else clean_env()
        env = {k: v for k, v in env.items() if not k.startswith("PGVAULT_")}
        env["PGVAULT_HOME"] = str(self.home)
        env.update(extra)
        return env

    def cli(
        self,
        *args: str,
        cluster: PgCluster | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``pgvault *args`` in ``home`` (cwd too, so no stray pgvault.toml is read)."""
        full_env = self.cli_env(cluster)
        full_env.update(env or {})
        return subprocess.run(
            [str(PGVAULT), *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=self.home,
            timeout=timeout,
            check=False,
        )


def error_line(done: subprocess.CompletedProcess[str], *, alone: bool = True) -> str:
    """The one ``error:`` line a failed command ends its stderr with.

    Args:
        alone: the error is all of stderr (no progress lines before it).
    """
    assert done.returncode != 0, f"expected a failure, got 0; stdout: {done.stdout[-500:]}"
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not one error line:\n{done.stderr}"
    if alone:
        assert len(lines) == 1, f"stderr is not one line:\n{done.stderr}"
    return errors[0]


def user_table_counts(cluster: PgCluster, dbname: str) -> dict[str, int]:
    """``{"schema.table": rows}`` of every ordinary table (partitions included)."""
    names = cluster.psql(
        "SELECT format('%I.%I', n.nspname, c.relname) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1",
        dbname=dbname,
    ).splitlines()
    if not names:
        return {}
    query = " UNION ALL ".join(
        f"SELECT '{name.replace(chr(39), chr(39) * 2)}', count(*) FROM ONLY {name}"
        for name in names
    )
    out = cluster.psql(query, dbname=dbname)
    pairs = (line.rsplit("|", 1) for line in out.splitlines() if line)
    return {name.replace('"', ""): int(rows) for name, rows in pairs}


class Janitor:
    """Database names a test creates (directly or through restores), dropped at its end
    together with any ``<name>_pre_restore_*`` / ``<name>_pgvault_*`` databases left beside
    them."""

    def __init__(self) -> None:
        self._names: list[tuple[PgCluster, str]] = []
        self._roles: list[tuple[PgCluster, str]] = []

    def new(self, cluster: PgCluster, prefix: str = "t") -> str:
        """A fresh unique name on ``cluster`` (not created), tracked for dropping."""
        name = unique_name(prefix)
        self.track(cluster, name)
        return name

    def track(self, cluster: PgCluster, name: str) -> str:
        """Drop ``name`` and its restore leftovers at the end of the test."""
        self._names.append((cluster, name))
        return name

    def owned(self, cluster: PgCluster, prefix: str = "t") -> tuple[str, str]:
        """A new database owned by a new non-superuser role: ``(dbname, role)``, both
        dropped at the end of the test (the way an application's database is owned)."""
        role = f"{prefix}_owner_{secrets.token_hex(3)}"
        cluster.psql(f'CREATE ROLE "{role}" NOLOGIN')
        self._roles.append((cluster, role))
        name = self.new(cluster, prefix)
        cluster.psql(f'CREATE DATABASE "{name}" OWNER "{role}"')
        return name, role

    def track_role(self, cluster: PgCluster, role: str) -> str:
        """Drop the role ``role`` (if it exists) at the end of the test."""
        self._roles.append((cluster, role))
        return role

    def cleanup(self) -> None:
        """Drop every tracked database and its leftovers, then the tracked roles."""
        for cluster, name in reversed(self._names):
            if not cluster.running:
                continue
            for db in cluster.databases():
                if db == name or db.startswith((f"{name}_pre_restore_", f"{name}_pgvault_")):
                    cluster.drop_database(db)
        for cluster, role in reversed(self._roles):
            if cluster.running:
                cluster.psql(f'DROP ROLE IF EXISTS "{role}"')
