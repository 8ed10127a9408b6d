"""Live dumps as jobs: ``GET /databases/{name}/dump`` streams pg_dump's output to the
client while a job (one per database, like backups) runs it, kept as a backup or not."""

from __future__ import annotations

from typing import Any

from pgvault import backups
from pgvault.catalog.jobs import JobRecord
from pgvault.dumps.layers import Stage
from pgvault.service.jobs import JobContext, JobRunner


def start_dump(
    runner: JobRunner,
    planned: backups.BackupPlan,
    sink: Stage,
    *,
    keep: bool,
    params: dict[str, Any],
) -> JobRecord:
    """A live dump job (``GET /databases/{name}/dump``): pg_dump's output goes to ``sink``
    as it is produced; with ``keep`` it is also stored and recorded as the backup
    ``planned.backup_id`` (:func:`pgvault.backups.run` with a tee), else nothing is kept.
    ``sink.close()`` is called when the job ends, whatever the outcome.

    Raises:
        Busy: a backup or restore of the database is running.
    """
    request = planned.request

    def work(context: JobContext) -> dict[str, Any]:
        try:
            if keep:
                record = backups.run(
                    runner.settings,
                    runner.catalog,
                    planned,
                    progress=context.progress,
                    cancel=context.cancel,
                    tee=sink,
                )
                context.job.backup_id = record.id
                return {"backup": record.model_dump(mode="json")}
            sent = backups.stream_dump(
                planned, sink, progress=context.progress, cancel=context.cancel
            )
            return {"bytes": sent}
        finally:
            sink.close()

    return runner.submit(
        "dump",
        work,
        database=request.target.name,
        conn=request.target.conn,
        backup_id=planned.backup_id if keep else None,
        params={**params, "keep": keep},
        created_by=request.created_by,
    )
