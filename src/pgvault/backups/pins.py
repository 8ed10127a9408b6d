"""Pinning: a pinned backup is exempt from retention (``pinned`` and the policy's
``include_pinned``, as restic's ``--keep-tag`` and Barman's ``keep`` annotate a backup to
keep). Only the catalog row changes; the stored manifest keeps the state it was written with.
"""

from __future__ import annotations

import logging

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.errors import ConfigError

log = logging.getLogger(__name__)


def set_pinned(catalog: Catalog, backup_id: str, pinned: bool) -> BackupRecord:
    """Pin (``pinned=True``) or unpin a backup; returns the updated row.

    Raises:
        NotFound: unknown id.
        ConfigError: the backup is deleted (nothing left to keep).
    """
    record = catalog.get_backup(backup_id)
    if record.status == "deleted":
        raise ConfigError(f"backup {record.id} is deleted: there is nothing to pin")
    if record.pinned != pinned:
        record.pinned = pinned
        catalog.save_backup(record)
        log.info("backup %s %s", record.id, "pinned" if pinned else "unpinned")
    return record
