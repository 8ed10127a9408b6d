"""Storage targets: one interface (:class:`Storage`), one module per backend.

Owns putting bytes somewhere and reading them back: ``base`` (the interface, safe keys),
``local`` and ``s3`` (with ``s3_streams``: reader and multipart writer). :func:`open_storage`
picks the backend from the URL's scheme and imports its SDK lazily. It knows nothing of
what the bytes are.
"""

from __future__ import annotations

from urllib.parse import urlparse

from pgvault.config.settings import Settings, StorageTargetSettings
from pgvault.errors import ConfigError
from pgvault.storage.base import ObjectInfo, ObjectWriter, Storage, validate_key

__all__ = ["ObjectInfo", "ObjectWriter", "Storage", "open_storage", "resolve", "validate_key"]

BACKENDS = ("file (a path or file:///path)", "s3 (s3://bucket/prefix)")


def open_storage(target: StorageTargetSettings, name: str | None = None) -> Storage:
    """Open the backend for one storage target.

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
            target, name, max_attempts=target.max_attempts, read_timeout=target.read_timeout
        )
    raise ConfigError(
        f"unknown storage scheme {scheme!r} in {target.url}: available: {', '.join(BACKENDS)}"
    )


def resolve(settings: Settings, name_or_url: str | None = None) -> Storage:
    """The storage target named in the config, or given as a URL, or the default one.

    Raises:
        ConfigError: unknown scheme.
    """
    chosen = name_or_url or settings.default_storage_location
    if chosen in settings.storage_targets:
        return open_storage(settings.storage_targets[chosen], chosen)
    return open_storage(StorageTargetSettings(url=chosen))
