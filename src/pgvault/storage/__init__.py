"""Storage targets: one interface (:class:`Storage`), one module per backend.

Owns putting bytes somewhere and reading them back: ``base`` (the interface, safe keys),
``local`` and ``s3`` (with ``s3_streams``: reader and multipart writer; ``s3_times``: its
timestamp parser). :func:`open_storage` picks the backend from the URL's scheme and imports
its SDK lazily. It knows nothing of what the bytes are.
"""

from __future__ import annotations

from urllib.parse import urlparse

from pgvault.config.settings import Settings, StorageTargetSettings
from pgvault.errors import ConfigError
from pgvault.storage.base import ObjectInfo, ObjectWriter, Storage, validate_key

__all__ = ["ObjectInfo", "ObjectWriter", "Storage", "open_storage", "resolve", "validate_key"]

BACKENDS = ("file (a path or file:///path)", "s3 (s3://bucket/prefix)")


def open_storage(
    target: StorageTargetSettings, name: str | None = None, *, lock_days: float | None = None
) -> Storage:
    """Open the backend for one storage target.

    Args:
        lock_days: S3 Object Lock period of new objects (days) when the target has
            ``object_lock`` but no ``object_lock_days``.

    Raises:
        ConfigError: unknown scheme (the message lists the available backends).
    """
    scheme = urlparse(target.url).scheme
    if scheme in ("", "file"):
        from pgvault.storage.local import LocalStorage

        return LocalStorage(target.url, name)
    if scheme == "s3":
        from pgvault.storage.s3 import S3Storage  # type: ignore[import-not-found,unused-ignore]

        return S3Storage(  # type: ignore[no-any-return,unused-ignore]
            target,
            name,
            max_attempts=target.max_attempts,
            read_timeout=target.read_timeout,
            lock_days=lock_days,
        )
    raise ConfigError(
        f"unknown storage scheme {scheme!r} in {target.url}: available: {', '.join(BACKENDS)}"
    )


def resolve(
    settings: Settings, name_or_url: str | None = None, *, database: str | None = None
) -> Storage:
    """The storage target named in the config, or given as a URL, or the default one.

    Args:
        database: the database whose backups will be written; on a target with
            ``object_lock`` and no ``object_lock_days``, new objects are locked for the
            period its retention policy (for that target) implies
            (:meth:`~pgvault.config.operations.RetentionSettings.lock_days`).

    Raises:
        ConfigError: unknown scheme.
    """
    chosen = name_or_url or settings.default_storage_location
    target = settings.storage_targets.get(chosen)
    if target is None:
        return open_storage(StorageTargetSettings(url=chosen))
    lock_days = None
    db = settings.databases.get(database or "")
    if target.object_lock and target.object_lock_days is None and db is not None:
        if db.retention is not None:
            lock_days = db.retention.for_target(chosen).lock_days()
    return open_storage(target, chosen, lock_days=lock_days)
