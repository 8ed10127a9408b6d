"""The catalog's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Change them only together with a new Alembic migration in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (SQLite has none) and returns aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("expected a datetime")
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog: use UTC-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = MetaData()

BACKUP_INDEXES: dict[str, tuple[str, ...]] = {
    # newest-first listing, keyset pages, one day's counts; with status in it the default
    # listing (status <> 'deleted') and deep offsets read the index alone
    "ix_backups_started": ("started_at", "id", "status", "database", "size_bytes"),
    # one database's rows newest first (any status), its last run, the database names
    "ix_backups_database_started": ("database", "started_at", "id", "status"),
    # one database's newest (or oldest) completed backup, the comparable one before it
    "ix_backups_database_status": ("database", "status", "started_at", "id"),
    # listings filtered by status, environment or trigger alone
    "ix_backups_status_started": ("status", "started_at", "id"),
    "ix_backups_environment_started": ("environment", "started_at", "id", "status"),
    "ix_backups_trigger_started": ("trigger", "started_at", "id", "status"),
    # one database's pinned backups (retention reads them beside its newest; revision 0010)
    "ix_backups_database_pinned": ("database", "pinned", "status", "started_at", "id"),
}
"""The indexes of ``backups`` (revisions 0005 and 0010). Every listing is ordered by
``(started_at, id)`` newest first (``id`` breaks ties), so each index puts those columns
right after its equality columns and a page is read straight off one of them."""

backups = Table(
    "backups",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("database", String(255), nullable=False),
    Column("dbname", String(255), nullable=False),
    Column("server", String(255), nullable=False),
    Column("environment", String(64)),
    Column("trigger", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("format", String(16), nullable=False),
    Column("compression", String(16), nullable=False),
    Column("compression_level", Integer),
    Column("compressed_by", String(16)),
    Column("encrypted", Boolean, nullable=False, default=False),
    Column("tables", JSON, nullable=False),
    Column("exclude_tables", JSON, nullable=False),
    Column("schemas", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("storage", Text, nullable=False),
    Column("storage_key", Text, nullable=False),
    Column("globals_key", Text),
    Column("globals_sha256", String(64)),
    Column("size_bytes", BigInteger),
    Column("sha256", String(64)),
    Column("server_version", String(32)),
    Column("pg_dump_version", String(32)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("duration_seconds", Float),
    Column("error", Text),
    Column("row_counts", JSON),
    Column("object_counts", JSON),
    Column("created_by", String(255)),
    Column("runner", String(255)),
    Column("verified_at", UTCDateTime),
    Column("verify_status", String(16)),
    Column("verify_detail", Text),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("manifest_version", Integer, nullable=False, default=1),
    *(Index(name, *columns) for name, columns in BACKUP_INDEXES.items()),
)

restores = Table(
    "restores",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("backup_id", String(64)),
    Column("source", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("dbname", String(255), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("safety_backup_id", String(64)),
    Column("previous_database", String(255)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("duration_seconds", Float),
    Column("error", Text),
    Column("warnings", JSON, nullable=False),
    Column("created_by", String(255)),
    Index("ix_restores_started", "started_at"),
)

backup_days = Table(
    "backup_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("database", String(255), primary_key=True),
    Column("completed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("interrupted", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("deleted", Integer, nullable=False),
    Column("total_bytes", BigInteger, nullable=False),
    Column("pruned", Integer, nullable=False, server_default="0"),
)
"""Per UTC day (of ``started_at``) and database: backup rows by status, the bytes of the
completed ones (revision 0005) and the rows retention deleted (``pruned``: deleted rows
labelled ``deleted_by=retention``; revision 0010). Kept by :mod:`pgvault.catalog.days` in
the transaction of every write to ``backups``, so history and totals read days, not every
row."""

backup_copies = Table(
    "backup_copies",
    metadata,
    Column("backup_id", String(64), primary_key=True),
    Column("storage", Text, primary_key=True),
    Column("storage_key", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("size_bytes", BigInteger),
    Column("sha256", String(64)),
    Column("copied_at", UTCDateTime),
    Column("error", Text),
)

# --- the service (revision 0003): users, tokens, jobs, audit, idempotency, throttling ------

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("token_version", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("created_by", String(255)),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("created_by", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("family_id", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("replaced_by", String(64)),
    Index("ix_refresh_tokens_user", "user_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("database", String(255)),
    Column("backup_id", String(64)),
    Column("restore_id", String(64)),
    Column("params", JSON, nullable=False),
    Column("phase", Text),
    Column("bytes_done", BigInteger, nullable=False, default=0),
    Column("rate", Float),
    Column("result", JSON),
    Column("error", Text),
    Column("error_kind", String(64)),
    Column("created_by", String(255)),
    Column("runner", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Index("ix_jobs_created", "created_at"),
    Index("ix_jobs_status", "status"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255)),
    Column("action", String(255), nullable=False),
    Column("target", Text),
    Column("source_address", String(64)),
    Column("result", String(16), nullable=False),
    Column("status_code", Integer),
    Column("detail", Text),
    Index("ix_audit_events_at", "at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("actor", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("job_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(320), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UTCDateTime, nullable=False),
    Column("locked_until", UTCDateTime),
)

# --- retention (revision 0006): holds, notified once each ---------------------------------

retention_holds = Table(
    "retention_holds",
    metadata,
    Column("database", String(255), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("notified_at", UTCDateTime),
)

# --- file snapshots (revision 0007): snapshots of file sets and their copies ---------------

file_snapshots = Table(
    "file_snapshots",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("file_set", String(255), nullable=False),
    Column("source", Text, nullable=False),
    Column("storage", Text, nullable=False),
    Column("manifest_key", Text, nullable=False),
    Column("index_key", Text, nullable=False),
    Column("manifest_sha256", String(64)),
    Column("manifest_size", BigInteger),
    Column("index_sha256", String(64)),
    Column("index_size", BigInteger),
    Column("status", String(32), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("backup_id", String(64)),
    Column("environment", String(64)),
    Column("encrypted", Boolean, nullable=False, default=False),
    Column("consistency", String(16), nullable=False),
    Column("as_of", UTCDateTime),
    Column("objects", BigInteger),
    Column("bytes", BigInteger),
    Column("copied_objects", BigInteger),
    Column("copied_bytes", BigInteger),
    Column("stored_blobs", BigInteger),
    Column("stored_bytes", BigInteger),
    Column("detail", Text),
    Column("labels", JSON, nullable=False),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("duration_seconds", Float),
    Column("error", Text),
    Column("created_by", String(255)),
    Column("runner", String(255)),
    Column("verified_at", UTCDateTime),
    Column("verify_status", String(16)),
    Column("verify_detail", Text),
    Index("ix_file_snapshots_set_started", "file_set", "started_at"),
    Index("ix_file_snapshots_backup", "backup_id"),
    Index("ix_file_snapshots_status", "status"),
)

file_snapshot_copies = Table(
    "file_snapshot_copies",
    metadata,
    Column("snapshot_id", String(64), primary_key=True),
    Column("storage", Text, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("copied_blobs", BigInteger),
    Column("copied_bytes", BigInteger),
    Column("copied_at", UTCDateTime),
    Column("error", Text),
)

# --- physical backups and the WAL archive (revision 0008) ----------------------------------

wal_segments = Table(
    "wal_segments",
    metadata,
    Column("system_identifier", String(20), primary_key=True),
    Column("name", String(40), primary_key=True),
    Column("timeline", Integer, nullable=False),
    Column("segment_number", BigInteger),
    Column("database", String(255), nullable=False),
    Column("storage", Text, nullable=False),
    Column("storage_key", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("wal_size_bytes", BigInteger, nullable=False),
    Column("wal_sha256", String(64), nullable=False),
    Column("compression", String(16), nullable=False),
    Column("encrypted", Boolean, nullable=False, default=False),
    Column("source", String(16), nullable=False),
    Column("archived_at", UTCDateTime, nullable=False),
    Index("ix_wal_segments_order", "system_identifier", "timeline", "segment_number"),
    Index("ix_wal_segments_database", "database", "archived_at"),
)

physical_backups = Table(
    "physical_backups",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("database", String(255), nullable=False),
    Column("server", String(255), nullable=False),
    Column("environment", String(64)),
    Column("kind", String(16), nullable=False),
    Column("parent_id", String(64)),
    Column("status", String(32), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("storage", Text, nullable=False),
    Column("storage_key", Text, nullable=False),
    Column("manifest_key", Text),
    Column("size_bytes", BigInteger),
    Column("sha256", String(64)),
    Column("manifest_sha256", String(64)),
    Column("compression", String(16), nullable=False),
    Column("encrypted", Boolean, nullable=False, default=False),
    Column("server_version", String(32)),
    Column("tool_version", String(32)),
    Column("system_identifier", String(20)),
    Column("timeline", Integer),
    Column("segment_size", BigInteger),
    Column("start_lsn", BigInteger),
    Column("stop_lsn", BigInteger),
    Column("start_wal", String(40)),
    Column("stop_wal", String(40)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("duration_seconds", Float),
    Column("error", Text),
    Column("labels", JSON, nullable=False),
    Column("created_by", String(255)),
    Column("runner", String(255)),
    Column("verified_at", UTCDateTime),
    Column("verify_status", String(16)),
    Column("verify_detail", Text),
    Column("pinned", Boolean, nullable=False, default=False),
    Index("ix_physical_backups_database_started", "database", "started_at"),
)

restore_points = Table(
    "restore_points",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("database", String(255), nullable=False),
    Column("system_identifier", String(20), nullable=False),
    Column("name", String(64), nullable=False),
    Column("lsn", BigInteger, nullable=False),
    Column("timeline", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255)),
    Index("ix_restore_points_database", "database", "name"),
)

wal_streams = Table(
    "wal_streams",
    metadata,
    Column("database", String(255), primary_key=True),
    Column("system_identifier", String(20)),
    Column("slot", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("runner", String(255)),
    Column("started_at", UTCDateTime),
    Column("heartbeat_at", UTCDateTime),
    Column("restarts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("server_lsn", BigInteger),
    Column("slot_retained_bytes", BigInteger),
)

# --- trust (revision 0004): the journal of restores, so a crash mid-swap is repaired -----

restore_journal = Table(
    "restore_journal",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("step", String(32), nullable=False),
    Column("server", String(255), nullable=False),
    Column("conn_params", JSON, nullable=False),
    Column("dbname", String(255)),
    Column("scratch", String(255)),
    Column("previous", String(255)),
    Column("load_role", String(64)),
    Column("load_database", String(255)),
    Column("proven", Boolean, nullable=False, default=False),
    Column("runner", String(255)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("outcome", Text),
    Index("ix_restore_journal_finished", "finished_at"),
)
