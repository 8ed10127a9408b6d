"""Settings of file sets: an application's uploaded files (an S3 prefix or a local
directory) snapshotted beside its database. Nested into :class:`pgvault.config.settings.Settings`
as ``files`` and linked from a database with ``files = ["images"]``.

Shape in ``pgvault.toml``::

    [files.images]
    source = "s3://app-uploads/images"   # or a local directory: "/srv/app/uploads"
    endpoint_url = "https://minio.internal:9000"   # the source's S3 options, as for targets
    storage = ["offsite"]                # where snapshots are kept (the first; copies to others)
    exclude = ["*.tmp", "cache/**"]
    encrypt_to = ["age1..."]             # default: the global age_recipients
    [files.images.schedules.hourly]
    cron = "0 * * * *"
    [files.images.retention]
    keep_daily = 14

    [databases.app]
    files = ["images"]                   # each backup of app is followed by a linked snapshot
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pgvault.config.operations import RetentionSettings

SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""File set names: they become a storage key segment (``files/<name>/...``)."""


def check_set_name(name: str) -> str:
    """Return ``name`` if it is a valid file set name, else raise ``ValueError``."""
    if not SET_NAME.match(name):
        raise ValueError(
            f"file set name {name!r}: use letters, digits, '.', '_' and '-' (at most 63)"
        )
    return name


class FileScheduleSettings(BaseModel):
    """One scheduled snapshot of a file set (``[files.NAME.schedules.SCHEDULE]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(description="Crontab expression (5 fields, or 6 with seconds first).")
    timezone: str | None = Field(
        default=None, description="IANA zone the cron is read in (default: the global one)."
    )
    enabled: bool = Field(default=True, description="Run this schedule (false: listed only).")
    retention: RetentionSettings | None = Field(
        default=None, description="Policy for this schedule's snapshots alone."
    )


class FileSetSettings(BaseModel):
    """One file set (``[files.NAME]``): where the files are and where snapshots go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(
        description="s3://bucket/prefix (S3-compatible) or a local directory (path or file://)."
    )
    region: str | None = Field(default=None, description="S3 region of the source.")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint of the source (MinIO, R2, Ceph)."
    )
    path_style: bool = Field(default=False, description="S3 path-style addressing (source).")
    profile: str | None = Field(default=None, description="AWS profile of the source.")
    storage: list[str] = Field(
        default_factory=list,
        description="Storage target names or URLs; the first holds the snapshots, the others "
        "get copies. Default: the default storage target.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Globs of keys left out: '*' stays within a path segment, '**' crosses "
        "segments, a pattern without '/' matches the last segment (e.g. '*.tmp', 'cache/**').",
    )
    encrypt_to: list[str] = Field(
        default_factory=list,
        description="age recipients of this set's blobs and manifests (default: the global "
        "age_recipients).",
    )
    workers: int = Field(
        default=8, ge=1, le=64, description="Objects transferred in parallel (threads)."
    )
    memory_mib: int = Field(
        default=24,
        ge=8,
        le=4096,
        description="Bytes of object data held in memory at once by all workers (MiB); "
        "objects up to a third of it are read whole, larger ones are streamed twice.",
    )
    blob_grace_hours: float = Field(
        default=48.0,
        gt=0,
        description="Unreferenced blobs younger than this are never swept; a snapshot reuses "
        "an unreferenced stored blob only when it is younger than half of it (hours).",
    )
    schedules: dict[str, FileScheduleSettings] = Field(
        default_factory=dict, description="Scheduled snapshots by name."
    )
    retention: RetentionSettings | None = Field(
        default=None, description="Retention policy of this set's snapshots (none: keep all)."
    )
    max_staleness_hours: float | None = Field(
        default=None,
        gt=0,
        description="Health warns when the newest completed snapshot is older (hours); "
        "default: from the schedules, else 26 h.",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("source is empty: give s3://bucket/prefix or a directory")
        return value.strip()
