"""Catalog rows as typed records; a :class:`BackupRecord` is also the stored manifest.

Times are timezone-aware UTC datetimes; sizes are bytes; durations are seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackupStatus = Literal["running", "completed", "failed", "interrupted", "deleted"]
Trigger = Literal["manual", "scheduled", "pre-restore", "upload"]
RestoreStatus = Literal["running", "completed", "failed", "interrupted"]

MANIFEST_VERSION = 1


class BackupRecord(BaseModel):
    """One backup: everything the catalog knows about it (also its JSON manifest)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    database: str = Field(description="Config name, or the database name for a bare URL.")
    dbname: str = Field(description="The PostgreSQL database name that was dumped.")
    server: str = Field(description="host:port of the server dumped.")
    environment: str | None = None
    trigger: Trigger = "manual"
    status: BackupStatus = "running"
    format: Literal["custom", "plain", "directory"] = "custom"
    compression: Literal["zstd", "gzip", "none"] = "zstd"
    compression_level: int | None = None
    compressed_by: Literal["pg_dump", "pgvault"] | None = Field(
        default=None, description="pg_dump (inside the archive) or pgvault (the stream)."
    )
    encrypted: bool = False
    tables: list[str] = Field(default_factory=list)
    exclude_tables: list[str] = Field(default_factory=list)
    schemas: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    storage: str = Field(description="Storage target name or URL.")
    storage_key: str
    globals_key: str | None = None
    globals_sha256: str | None = Field(
        default=None, description="sha256 of the stored globals file, checked before use."
    )
    size_bytes: int | None = None
    sha256: str | None = None
    server_version: str | None = None
    pg_dump_version: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    row_counts: dict[str, int] | None = None
    object_counts: dict[str, int] | None = None
    created_by: str | None = None
    runner: str | None = Field(default=None, description="host:pid of the process running it.")
    verified_at: datetime | None = None
    verify_status: Literal["ok", "failed"] | None = None
    verify_detail: str | None = None
    pinned: bool = False
    manifest_version: int = MANIFEST_VERSION

    @property
    def manifest_key(self) -> str:
        """Key of the JSON manifest stored beside the backup."""
        return manifest_key_for(self.storage_key)


def manifest_key_for(storage_key: str) -> str:
    """``<key>.manifest.json``."""
    return storage_key + ".manifest.json"


class RestoreRecord(BaseModel):
    """One restore run."""

    id: str
    backup_id: str | None = None
    source: str = Field(description="Backup id, or the path of a file restored with --file.")
    target: str = Field(description="Server display URL (no password).")
    dbname: str
    mode: Literal["swap", "clean", "recreate"]
    status: RestoreStatus = "running"
    safety_backup_id: str | None = None
    previous_database: str | None = Field(
        default=None, description="Where swap mode left the old live database."
    )
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    created_by: str | None = None


class BackupCopy(BaseModel):
    """A copy of a backup on another storage target (the 3-2-1 rule's second copy)."""

    backup_id: str
    storage: str
    storage_key: str
    status: Literal["completed", "failed", "deleted"]
    size_bytes: int | None = None
    sha256: str | None = None
    copied_at: datetime | None = None
    error: str | None = None
