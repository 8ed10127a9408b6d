"""A dump streamed to a caller as pg_dump produces it, without storing or recording it.

``GET /databases/{name}/dump`` ("download the current database") without ``keep``: the
same pg_dump, format and layers a backup of that database would use (a custom archive;
pg_dump's own zstd where it can, else pgvault's zstd stream; age when the database has
recipients), written chunk by chunk to the caller's sink. With ``keep`` the service runs
:func:`pgvault.backups.run.run` with a ``tee`` instead, so the backup is recorded from the
very bytes sent.
"""

from __future__ import annotations

import dataclasses
import threading

from pgvault import runtime
from pgvault.backups.plan import BackupPlan, BackupRequest, plan, probe
from pgvault.backups.stream import Progress
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import Encryptor, parse_recipients
from pgvault.dumps.layers import Sink, compressor
from pgvault.errors import Cancelled
from pgvault.postgres.commands import pg_dump_command
from pgvault.postgres.runner import Child
from pgvault.progress import ProgressEvent


def plan_live(settings: Settings, request: BackupRequest) -> BackupPlan:
    """Probe the server and plan a custom-format dump of ``request`` (what a live download
    sends, stored or not).

    Raises:
        ConnectionFailed, ToolError, ConfigError: as :func:`pgvault.backups.plan.plan`.
    """
    facts = probe(settings, request.target)
    custom = dataclasses.replace(request, dump_format="custom")
    return plan(settings, custom, facts, started=runtime.now())


def stream_dump(
    planned: BackupPlan,
    sink: Sink,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Run pg_dump for ``planned`` with its output (after the plan's compression and
    encryption) written to ``sink`` as it comes. Returns the bytes pg_dump wrote.

    Raises:
        ToolError: pg_dump failed or timed out.
        Cancelled: ``cancel`` was set (pg_dump is stopped).
    """
    request, facts = planned.request, planned.facts
    argv = pg_dump_command(
        facts.pg_dump.path,
        planned.target.conn.dsn(),
        dump_format="custom",
        compress=planned.compression.pg_dump_compress,
        tables=request.tables,
        exclude_tables=request.exclude_tables,
        schemas=request.schemas,
    )
    encryptor = (
        Encryptor(sink, parse_recipients(planned.recipients)) if planned.recipients else None
    )
    top = compressor(planned.compression.stream, planned.level, encryptor or sink)
    done = 0
    with Child(argv, env=planned.target.conn.child_env(), timeout=planned.timeout) as child:
        for chunk in child.chunks():
            if cancel is not None and cancel.is_set():
                raise Cancelled("dump cancelled")
            top.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(ProgressEvent("dumping", done))
        child.check()
    top.close()
    if encryptor is not None:
        encryptor.close()
    return done
