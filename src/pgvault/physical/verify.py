"""Verifying base backups (``pgvault wal verify ID [--full]``).

* default: re-read the stored archive and manifest (size and sha256 against the catalog),
  unpack the backup into a scratch directory and run ``pg_verifybackup --no-parse-wal``
  against its own ``backup_manifest`` (every file's SHA256 checksum);
* ``--full``: recover the backup (its incremental chain combined) to its end
  (``recovery_target = 'immediate'``) in a private temporary server, start it, and count
  the rows of every table of the database - the backup is proven restorable.

The result and time are recorded on the backup's row; scratch directories are removed.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pgvault import storage
from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook, HashingReader
from pgvault.errors import PgvaultError, VerifyError
from pgvault.physical import recovery
from pgvault.physical.private import private_cluster
from pgvault.physical.unpack import prepare_directory, unpack
from pgvault.postgres import runner, server, tools
from pgvault.postgres.physical_commands import pg_verifybackup_command

log = logging.getLogger(__name__)


@dataclass
class PhysicalVerifyResult:
    """The outcome of one verification; ``row_counts`` only with ``full``."""

    backup_id: str
    ok: bool
    detail: str
    full: bool
    row_counts: dict[str, int] = field(default_factory=dict)


def _check_stored(settings: Settings, record: PhysicalBackupRecord) -> None:
    store = storage.resolve(settings, record.storage)
    with store.open_read(record.storage_key) as raw:
        hashing = HashingReader(raw)
        hashing.drain()
    if (hashing.size, hashing.sha256) != (record.size_bytes, record.sha256):
        raise VerifyError(f"base backup {record.id}: stored bytes differ from the catalog")
    if record.manifest_key is not None:
        manifest = store.read_bytes(record.manifest_key)
        if hashlib.sha256(manifest).hexdigest() != record.manifest_sha256:
            raise VerifyError(f"base backup {record.id}: stored backup_manifest is corrupt")


def verify(
    settings: Settings,
    catalog: Catalog,
    target: DatabaseTarget,
    backup_id: str,
    *,
    full: bool = False,
    decrypt: DecryptHook | None = None,
) -> PhysicalVerifyResult:
    """Verify one completed base backup and record the result.

    Raises:
        NotFound: unknown id.
        VerifyError: the backup failed a check (also recorded on its row).
    """
    record = rows.get_backup(catalog, backup_id)
    if record.status != "completed":
        raise VerifyError(f"base backup {record.id} is {record.status}, not completed")
    try:
        _check_stored(settings, record)
        detail = _verify_files(settings, record, decrypt)
        counts: dict[str, int] = {}
        if full:
            counts = _recover_and_count(settings, catalog, target, record, decrypt)
            detail += f"; recovered and counted {sum(counts.values())} rows in {len(counts)} tables"
    except PgvaultError as exc:
        _record(catalog, record, "failed", str(exc))
        if isinstance(exc, VerifyError):
            raise
        raise VerifyError(f"base backup {record.id} failed verification: {exc}") from exc
    _record(catalog, record, "ok", detail)
    return PhysicalVerifyResult(record.id, True, detail, full, counts)


def _record(catalog: Catalog, record: PhysicalBackupRecord, status: str, detail: str) -> None:
    record.verified_at = datetime.now(UTC)
    record.verify_status = "ok" if status == "ok" else "failed"
    record.verify_detail = detail
    rows.save_backup(catalog, record)


def _verify_files(
    settings: Settings, record: PhysicalBackupRecord, decrypt: DecryptHook | None
) -> str:
    """Unpack into a scratch directory and run pg_verifybackup against its manifest."""
    major = int((record.server_version or "0").split(".")[0])
    tool = tools.choose("pg_verifybackup", major, settings.bin_dir)
    with tempfile.TemporaryDirectory(prefix="pgvault-verify-") as tmp:
        scratch = Path(tmp) / "data"
        prepare_directory(scratch)
        unpack(settings, record, scratch, decrypt)
        runner.run(pg_verifybackup_command(tool.path, scratch), timeout=None)
    return f"sha256 matches; pg_verifybackup {tool.version}: every file matches the manifest"


def _recover_and_count(
    settings: Settings,
    catalog: Catalog,
    target: DatabaseTarget,
    record: PhysicalBackupRecord,
    decrypt: DecryptHook | None,
) -> dict[str, int]:
    """Recover the backup to its end privately and count every table's rows."""
    with private_cluster(
        settings,
        catalog,
        target,
        recovery.RecoveryTarget("immediate"),
        decrypt=decrypt,
        backup_id=record.id,
    ) as recovered:
        with server.connect(recovered.conninfo(target.conn.dbname)) as conn:
            return server.count_rows(conn, server.user_tables(conn))
