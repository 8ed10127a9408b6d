"""A private temporary server recovered from the archive, for pgvault's own use.

Used by ``restore --to URL`` (dump one database as it was) and ``wal verify --full``
(prove a base backup starts): recovered into ``<home>/restores/<id>/cluster``, reachable only
through a unix socket in a fresh 0700 directory (``listen_addresses = ''``,
``pg_hba.conf``: ``local all all trust``), stopped and removed when the block ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgvault import private, workdirs
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
    scratch = cluster.scratch_root(settings, account)
    private.makedirs(scratch)
    # named by workdirs.mark: a crash leaves it to the next start's sweep_recoveries
    work = Path(tempfile.mkdtemp(prefix=workdirs.mark(workdirs.RECOVERY_PREFIX), dir=scratch))
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


def sweep_recoveries(settings: Settings) -> list[Path]:
    """Remove the private recovery clusters of pgvault processes that died on this host
    (under ``<home>/restores`` or the system's temporary directory, see
    :func:`~pgvault.physical.cluster.scratch_root`), except one whose server still runs
    (it is kept, with a warning, until that server is stopped). Returns those removed."""
    removed = []
    for base in workdirs.scratch_places(Path(settings.home)):
        removed += workdirs.sweep_marked(base, workdirs.RECOVERY_PREFIX, busy=_server_runs)
    return removed


def _server_runs(work: Path) -> bool:
    """Whether the postmaster of the cluster under ``work`` is alive (its pid file names a
    live process; an unreadable pid file counts as alive)."""
    try:
        first = (work / "cluster" / "postmaster.pid").read_text().split("\n", 1)[0]
    except FileNotFoundError:
        return False
    except OSError:
        return True
    if not first.strip().isdigit():
        return False
    try:
        os.kill(int(first), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
