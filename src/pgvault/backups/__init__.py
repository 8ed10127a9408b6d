"""Backups of databases: plan them, stream pg_dump into storage, record them, copy, delete.

Owns the backup's life from request to catalog row: ``plan`` (pure choices: format,
compression, key, targets), ``run`` (pg_dump -> layers -> storage under the database's lock),
``stream`` (the byte chain), ``record`` (the one way a stored object becomes a backup row,
also for ``uploads``), ``copies`` (3-2-1 second copies), ``delete``, ``pins``, ``manifests`` and
``download``. It never restores and never decides retention.
"""

from __future__ import annotations

from pgvault.backups.delete import delete, remove_stored
from pgvault.backups.download import download, download_name, open_backup
from pgvault.backups.live import plan_live, stream_dump
from pgvault.backups.manifests import rebuild_catalog, stored_manifests
from pgvault.backups.pins import set_pinned
from pgvault.backups.plan import BackupPlan, BackupRequest, ServerFacts, plan, probe
from pgvault.backups.record import recover_interrupted
from pgvault.backups.run import create, create_all, run
from pgvault.backups.uploads import receive_upload

__all__ = [
    "BackupPlan",
    "BackupRequest",
    "ServerFacts",
    "create",
    "create_all",
    "delete",
    "download",
    "download_name",
    "open_backup",
    "plan",
    "plan_live",
    "probe",
    "rebuild_catalog",
    "receive_upload",
    "recover_interrupted",
    "remove_stored",
    "run",
    "set_pinned",
    "stored_manifests",
    "stream_dump",
]
