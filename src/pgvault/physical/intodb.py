"""One database at a point in time, into any server: ``restore --database app
--target-time TS --to URL``.

::

    recover the cluster to TS into <home>/restores/<id>/cluster: a private temporary server
      (no TCP, a unix socket in a 0700 directory, pg_hba "local all all trust")
    -> pg_dump -Fc of the one database from it into <home>/restores/<id>/<db>.dump (0600)
    -> stop and remove the temporary server
    -> pgvault's own swap restore of that dump into URL (safety backup, scratch database,
       checks, rename; the previous database kept) - :func:`pgvault.restores.run.run`
    -> remove the dump

This brings point-in-time recovery to a managed server where no physical restore is
possible, and to one database of a shared cluster, which whole-cluster tools cannot do.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgvault.backups import naming as names
from pgvault.catalog import Catalog
from pgvault.catalog.records import RestoreRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget, check_environment
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import Refused, RestoreError
from pgvault.physical import cluster, recovery
from pgvault.physical.recovery import RecoveryResult, RecoveryTarget
from pgvault.postgres import server, tools
from pgvault.postgres.commands import pg_dump_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.postgres.runner import Child
from pgvault.restores import run as restores

log = logging.getLogger(__name__)


@dataclass
class IntoDatabaseResult:
    """The recovery's reached point and the swap restore's record."""

    recovered: RecoveryResult
    restore: RestoreRecord


def run(
    settings: Settings,
    catalog: Catalog,
    source: DatabaseTarget,
    recovery_target: RecoveryTarget,
    destination: restores.RestoreRequest,
    *,
    decrypt: DecryptHook | None = None,
    progress: Callable[[str], None] | None = None,
) -> IntoDatabaseResult:
    """Recover ``source``'s cluster to ``recovery_target`` privately, then swap-restore the
    database ``source.conn.dbname`` as it was then into ``destination.target``.

    ``destination`` carries the swap restore's options (confirmation, safety backup, jobs);
    its ``file`` is set here. Guards run first, before any recovery work.

    Raises:
        Refused: the destination's environment guard or confirmation failed.
        RestoreError: recovery could not reach the target (the message says what can be
            reached), or the swap restore failed (the live database is as it was).
    """
    step = progress or (lambda _message: None)
    _precheck(settings, destination)
    work = Path(settings.home).absolute() / "restores" / names.new_id()
    work.mkdir(parents=True, mode=0o700)
    account = cluster.server_account(settings)
    cluster.give_tree(work, account)
    sockets = Path(tempfile.mkdtemp(prefix="pgv-"))  # short: sun_path holds 107 bytes
    try:
        if account is not None:
            cluster.give_tree(sockets, account)
        request = recovery.RecoveryRequest(
            target=source,
            recovery_target=recovery_target,
            into=work / "cluster",
            decrypt=decrypt,
            keep_running=True,
            socket_dir=sockets,
            local_trust=True,
            listen=False,
        )
        plan = recovery.plan(settings, catalog, request)
        step(f"recovering {source.name} to {recovery_target.describe()} in a private cluster")
        reached = recovery.run(settings, catalog, plan, request)
        try:
            dump = work / f"{source.conn.dbname}.dump"
            step(f"dumping {source.conn.dbname} as it was at {reached.reached_time}")
            _dump(settings, plan.major, sockets, reached.port, source, dump)
        finally:
            cluster.Server(plan.into, plan.major, plan.into / "log" / "x", account).stop()
            shutil.rmtree(plan.into, ignore_errors=True)
        step(f"restoring it into {destination.target.conn.display()}")
        restored = restores.run(
            settings,
            catalog,
            dataclasses.replace(destination, file=dump, backup_id=None),
            progress=step,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)
    return IntoDatabaseResult(reached, restored)


def _precheck(settings: Settings, destination: restores.RestoreRequest) -> None:
    """The swap restore's own guards (environment, confirmation), checked before minutes of
    recovery work; :func:`pgvault.restores.run.run` checks them again."""
    check_environment(settings, destination.target)
    dbname = destination.target.conn.dbname
    if destination.confirm != dbname:
        raise Refused(f"confirmation does not match: type the database name {dbname!r} to restore")


def _dump(
    settings: Settings, major: int, sockets: Path, port: int, source: DatabaseTarget, dump: Path
) -> None:
    """pg_dump -Fc of the source database from the temporary cluster, as its bootstrap
    superuser (trust over the private socket), into ``dump``."""
    user = source.conn.params.get("user") or "postgres"
    local = ConnInfo(
        params={"host": str(sockets), "port": str(port), "user": user, "dbname": "postgres"}
    )
    with server.connect(local) as conn:
        row = conn.execute("SELECT rolname FROM pg_roles WHERE oid = 10").fetchone()
        server.require_database(conn, source.conn.dbname)
    superuser = str(row[0]) if row else user
    info = ConnInfo(params={**local.params, "user": superuser, "dbname": source.conn.dbname})
    pg_dump = tools.choose("pg_dump", major, settings.bin_dir)
    argv = pg_dump_command(pg_dump.path, info.dsn(), dump_format="custom")
    with open(dump, "wb") as out:
        dump.chmod(0o600)
        with Child(argv, env=cluster.server_env(), stdout=out) as child:
            child.check()
    if dump.stat().st_size == 0:
        raise RestoreError(f"pg_dump of {source.conn.dbname} from the recovered cluster was empty")
