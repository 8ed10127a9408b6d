"""File snapshots: an application's uploaded files (an S3 prefix or a local directory)
backed up beside its database, content-addressed, incremental and deduplicated, and
restored to the same moment.

Owns listing and reading sources, blobs, manifests, snapshot/restore/retention/verify runs
and the link to database backups. It must not parse CLI or HTTP input, nor run SQL (the
rows are :mod:`pgvault.catalog.files`'s); their retention, schedules and health are
:mod:`pgvault.operations`'s (``file_retention``, ``file_schedules``, ``file_health``).
"""

from __future__ import annotations

from pgvault.files.linked import LinkedRestore, restore_for_backup, snapshot_for_backup

__all__ = ["LinkedRestore", "restore_for_backup", "snapshot_for_backup"]
