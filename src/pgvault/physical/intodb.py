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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgvault import restores, runtime
from pgvault.catalog import Catalog
from pgvault.catalog.records import RestoreRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import RestoreError
from pgvault.physical import cluster
from pgvault.physical.private import private_cluster
from pgvault.physical.recovery import RecoveryResult, RecoveryTarget
from pgvault.postgres import server, tools
from pgvault.postgres.commands import pg_dump_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.postgres.runner import Child
from pgvault.progress import ProgressEvent
from pgvault.restores import policy

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
    _precheck(settings, catalog, destination)
    dbname = source.conn.dbname
    spool = Path(settings.home).absolute() / "restores" / (runtime.new_id() + "-dump")
    spool.mkdir(parents=True, mode=0o700)
    try:
        step(f"recovering {source.name} to {recovery_target.describe()} in a private cluster")
        with private_cluster(
            settings, catalog, source, recovery_target, decrypt=decrypt
        ) as recovered:
            reached = recovered.reached
            dump = spool / f"{dbname}.dump"
            step(f"dumping {dbname} as it was at {reached.reached_time}")
            with server.connect(recovered.conninfo("postgres")) as conn:
                server.require_database(conn, dbname)
            _dump(settings, recovered.plan.major, recovered.conninfo(dbname, superuser=True), dump)
        step(f"restoring it into {destination.target.conn.display()}")
        restored = restores.restore(
            settings,
            catalog,
            dataclasses.replace(destination, file=dump, backup_id=None),
            progress=lambda event: _report_step(step, event),
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return IntoDatabaseResult(reached, restored)


def _precheck(settings: Settings, catalog: Catalog, destination: restores.RestoreRequest) -> None:
    """The restore policy of the destination (environment, confirmation, passkey, recent
    backup), checked before minutes of recovery work; :func:`pgvault.restores.run` checks it
    again."""
    policy.check(
        settings,
        catalog,
        destination.target,
        confirm=destination.confirm,
        passkey=destination.passkey,
        safety_backup=destination.safety_backup,
    )


def _report_step(step: Callable[[str], None], event: ProgressEvent) -> None:
    if event.unit == "steps" and event.detail:
        step(event.detail)


def _dump(settings: Settings, major: int, info: ConnInfo, dump: Path) -> None:
    """``pg_dump -Fc`` of ``info``'s database into ``dump`` (0600)."""
    pg_dump = tools.choose("pg_dump", major, settings.bin_dir)
    argv = pg_dump_command(pg_dump.path, info.dsn(), dump_format="custom")
    with open(dump, "wb") as out:
        dump.chmod(0o600)
        with Child(argv, env=cluster.server_env(), stdout=out) as child:
            child.check()
    if dump.stat().st_size == 0:
        raise RestoreError(f"pg_dump of {info.dbname} from the recovered cluster was empty")
