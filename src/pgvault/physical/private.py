"""A private temporary server recovered from the archive, for pgvault's own use.

Used by ``restore --to URL`` (dump one database as it was) and ``wal verify --full``
(prove a base backup starts): recovered into ``<home>/restores/<id>/cluster``, reachable only
through a unix socket in a fresh 0700 directory (``listen_addresses = ''``,
``pg_hba.conf``: ``local all all trust``), stopped and removed when the block ends.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgvault import runtime
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook
from pgvault.physical import cluster, recovery
from pgvault.physical.recovery import RecoveryPlan, RecoveryResult, RecoveryTarget
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo


@dataclass
class PrivateCluster:
    """A running private server: where recovery got to, and how to reach it."""

    reached: RecoveryResult
    plan: RecoveryPlan
    sockets: Path
    role: str

    def conninfo(self, dbname: str, *, superuser: bool = False) -> ConnInfo:
        """Connection parameters for ``dbname`` over the private socket; ``superuser``:
        as the cluster's bootstrap superuser (found through ``pg_roles`` oid 10)."""
        params = {
            "host": str(self.sockets),
            "port": str(self.reached.port),
            "user": self.role,
            "dbname": dbname,
        }
        if superuser:
            with server.connect(ConnInfo(params={**params, "dbname": "postgres"})) as conn:
                row = conn.execute("SELECT rolname FROM pg_roles WHERE oid = 10").fetchone()
            params["user"] = str(row[0]) if row else self.role
        return ConnInfo(params=params)


@contextmanager
def private_cluster(
    settings: Settings,
    catalog: Catalog,
    source: DatabaseTarget,
    target: RecoveryTarget,
    *,
    decrypt: DecryptHook | None = None,
    backup_id: str | None = None,
) -> Iterator[PrivateCluster]:
    """Recover ``source``'s cluster to ``target`` (or ``backup_id`` to its end) privately.

    Raises:
        RestoreError, ArchiveError, ToolError, ConfigError: as :func:`recovery.run`.
    """
    account = cluster.server_account(settings)
    work = Path(settings.home).absolute() / "restores" / runtime.new_id()
    work.mkdir(parents=True, mode=0o700)
    sockets = Path(tempfile.mkdtemp(prefix="pgv-"))  # short: sun_path holds 107 bytes
    try:
        cluster.give_tree(work, account)
        cluster.give_tree(sockets, account)
        request = recovery.RecoveryRequest(
            target=source,
            recovery_target=target,
            into=work / "cluster",
            decrypt=decrypt,
            keep_running=True,
            socket_dir=sockets,
            local_trust=True,
            listen=False,
            backup_id=backup_id,
        )
        plan = recovery.plan(settings, catalog, request)
        reached = recovery.run(settings, catalog, plan, request)
        role = source.conn.params.get("user") or "postgres"
        try:
            yield PrivateCluster(reached, plan, sockets, role)
        finally:
            cluster.Server(plan.into, plan.major, plan.into / "log" / "stop.log", account).stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)
