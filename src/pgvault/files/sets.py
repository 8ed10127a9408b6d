"""The configured file sets and what every file operation needs of them: the settings,
the storage targets, the recipients, the lock, the local manifest cache, and the repair
of snapshots left ``running`` by a process that died.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pgvault import runtime, storage
from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord, SnapshotTrigger
from pgvault.config.files import FileSetSettings
from pgvault.config.settings import Settings
from pgvault.errors import ConfigError, PgvaultError
from pgvault.storage import Storage

log = logging.getLogger(__name__)


def settings_of(settings: Settings, name: str) -> FileSetSettings:
    """The ``[files.NAME]`` section.

    Raises:
        ConfigError: no such file set (the message lists the configured ones).
    """
    found = settings.files.get(name)
    if found is None:
        known = ", ".join(sorted(settings.files)) or "none configured"
        raise ConfigError(f"no file set {name!r} in the config ({known}): add [files.{name}]")
    return found


def storage_names(settings: Settings, cfg: FileSetSettings) -> list[str]:
    """The set's storage targets (names or URLs), the default one when none is given."""
    return list(cfg.storage) or [settings.default_storage_location]


def open_target(settings: Settings, name_or_url: str) -> Storage:
    """One storage target by name or URL.

    Raises:
        ConfigError: unknown scheme.
    """
    return storage.resolve(settings, name_or_url)


def recipients_of(settings: Settings, cfg: FileSetSettings) -> list[str]:
    """The age recipients of the set's new blobs: its own, else the global ones."""
    return list(cfg.encrypt_to or settings.age_recipients)


def lock_name(file_set: str) -> str:
    """The lock held by a snapshot or a restore of ``file_set`` (one at a time)."""
    return f"files:{file_set}"


def new_snapshot_id(now: datetime) -> str:
    """``fs-20261121-053012-7f3a``: sortable, unique enough."""
    return "fs-" + runtime.new_id(now)


def cache_path(settings: Settings, record: FileSnapshotRecord) -> Path:
    """Where the plain copy of an encrypted snapshot's manifest is kept on this host (so
    the next snapshot compares against it without the age identity): 0600 under
    ``<home>/cache/files/<set>/``."""
    return Path(settings.home).absolute() / "cache" / "files" / record.file_set / f"{record.id}.zst"


def prune_cache(settings: Settings, record: FileSnapshotRecord) -> None:
    """Keep only ``record``'s cached manifest in its set's cache directory."""
    directory = cache_path(settings, record).parent
    for path in directory.glob("*.zst"):
        if path.name != f"{record.id}.zst":
            path.unlink(missing_ok=True)


def recover_interrupted(
    settings: Settings, catalog: Catalog, file_set: str | None = None
) -> list[FileSnapshotRecord]:
    """Mark ``interrupted`` the snapshots left ``running`` by a dead process of this host
    and remove their unfinished manifest and index writes. Their blobs stay: the next
    snapshot reuses them, retention sweeps what nothing references.

    Returns:
        The rows marked.
    """
    marked = []
    for record in rows.list_snapshots(catalog, file_set=file_set, statuses=("running",)):
        if not runtime.runner_is_dead(record.runner, record.started_at):
            continue
        record.status = "interrupted"
        record.error = "the pgvault process taking this snapshot died"
        record.finished_at = datetime.now(UTC)
        try:
            store = open_target(settings, record.storage)
            for key in (record.manifest_key, record.index_key):
                store.discard_partial(key)
        except PgvaultError as exc:
            log.warning("unfinished writes of snapshot %s not removed: %s", record.id, exc)
        rows.save_snapshot(catalog, record)
        marked.append(record)
        log.warning("file snapshot %s was interrupted (its process died)", record.id)
    return marked


def record_failure(
    settings: Settings,
    catalog: Catalog,
    file_set: str,
    error: str,
    *,
    trigger: SnapshotTrigger = "linked",
    backup_id: str | None = None,
    labels: dict[str, str] | None = None,
) -> FileSnapshotRecord:
    """A ``failed`` row for a snapshot that failed before it recorded one (busy set,
    unreachable source), so ``show``, health and notifications say so."""
    now = datetime.now(UTC)
    cfg = settings.files.get(file_set)
    record = FileSnapshotRecord(
        id=new_snapshot_id(now),
        file_set=file_set,
        source=cfg.source if cfg is not None else "?",
        storage="",
        manifest_key="",
        index_key="",
        status="failed",
        trigger=trigger,
        backup_id=backup_id,
        environment=settings.environment,
        labels=dict(labels or {}),
        started_at=now,
        finished_at=now,
        duration_seconds=0.0,
        error=error,
        runner=runtime.runner_id(),
    )
    rows.save_snapshot(catalog, record)
    return record
