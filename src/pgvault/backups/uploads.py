"""Backups in and out of the service: uploaded dumps stored as backups, stored ones read.

An upload (:func:`receive_upload`) is checked before any database is touched::

    first 1 MiB -> gzip/zstd/age layers and the dump kind detected by content (not a dump:
    ArchiveError) -> the whole stream -> sha256 + byte count (over the limit: TooLarge)
    -> Storage writer -> commit -> pg_restore --list of what was stored (unreadable:
    ArchiveError, the object removed) -> manifest -> catalog row 'completed', trigger 'upload'

A restore of it then goes through :func:`pgvault.restores.run` like any other backup.
"""

from __future__ import annotations

import io
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pgvault import storage
from pgvault.backups import copies
from pgvault.backups import naming as names
from pgvault.backups import run as backups
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps import toc as archives
from pgvault.dumps.layers import DecryptHook, HashingWriter, open_layers, sniff_layer
from pgvault.errors import ArchiveError, NotFound, PgvaultError, TooLarge
from pgvault.postgres import tools

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_FORMAT_OF_KIND = {"custom": "custom", "plain": "plain", "tar": "directory"}


def receive_upload(
    settings: Settings,
    catalog: Catalog,
    target: DatabaseTarget,
    upload: IO[bytes],
    *,
    limit: int,
    decrypt: DecryptHook | None = None,
    created_by: str | None = None,
    filename: str | None = None,
) -> BackupRecord:
    """Store an uploaded dump (custom, plain or a directory tar; gzip/zstd/age detected by
    content) as a completed backup of ``target`` with trigger ``upload``.

    Args:
        upload: the file's bytes, read in 1 MiB chunks (never held whole).
        limit: the largest size accepted, in bytes.

    Raises:
        ArchiveError: not a dump, or pg_restore cannot read it (nothing kept).
        TooLarge: more than ``limit`` bytes (nothing kept).
        StorageError: the storage target failed.
    """
    head = upload.read(CHUNK)
    kind = "custom"
    layers: list[str] = []
    if sniff_layer(head) != "age":
        opened = open_layers(io.BytesIO(head))  # raises ArchiveError for a non-dump
        kind, layers = opened.kind, list(opened.layers)
    else:
        layers = ["age"]
    store = storage.resolve(
        settings, next(iter(target.settings.storage), None), database=target.name
    )
    dump_format = _FORMAT_OF_KIND[kind]
    compression = next((x for x in layers if x in ("zstd", "gzip")), "none")
    compressed_by = "pgvault" if compression != "none" else None
    ext = names.extension(dump_format, compression, compressed_by)
    started = datetime.now(UTC)
    backup_id = names.new_id(started)
    key = names.render_key(
        settings.name_template,
        started=started,
        timezone=settings.timezone,
        id=backup_id,
        database=target.name,
        dbname=target.conn.dbname,
        environment=target.environment,
        format=dump_format,
        ext=ext + (".age" if "age" in layers else ""),
        trigger="upload",
    )
    record = BackupRecord(
        id=backup_id,
        database=target.name,
        dbname=target.conn.dbname,
        server=target.conn.server_key(),
        environment=target.environment,
        trigger="upload",
        format=dump_format,
        compression=compression,
        compressed_by=compressed_by,
        encrypted="age" in layers,
        storage=store.name,
        storage_key=key,
        started_at=started,
        created_by=created_by,
        labels={"uploaded_as": filename[:200]} if filename else {},
    )
    catalog.add_backup(record)
    try:
        _store(store, key, head, upload, limit, record)
        record.object_counts = _check(settings, store, key, decrypt, record)
        record.status = "completed"
        record.finished_at = datetime.now(UTC)
        record.duration_seconds = (record.finished_at - started).total_seconds()
        store.write_bytes(record.manifest_key, record.model_dump_json(indent=2).encode())
        catalog.save_backup(record)
    except BaseException as exc:
        record.status, record.error = "failed", str(exc) or type(exc).__name__
        record.finished_at = datetime.now(UTC)
        backups.remove_stored(store, record)
        catalog.save_backup(record)
        raise
    log.info("upload %s stored as backup %s (%s bytes)", filename, backup_id, record.size_bytes)
    return record


def _store(
    store: storage.Storage,
    key: str,
    head: bytes,
    upload: IO[bytes],
    limit: int,
    record: BackupRecord,
) -> None:
    writer = store.open_write(key)
    hashing = HashingWriter(writer)
    try:
        chunk = head
        while chunk:
            if hashing.size + len(chunk) > limit:
                raise TooLarge(
                    f"the upload is larger than the limit of {limit} bytes "
                    "(api.max_upload_bytes): restore it with the CLI or raise the limit"
                )
            hashing.write(chunk)
            chunk = upload.read(CHUNK)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    record.size_bytes, record.sha256 = hashing.size, hashing.sha256


def _check(
    settings: Settings,
    store: storage.Storage,
    key: str,
    decrypt: DecryptHook | None,
    record: BackupRecord,
) -> dict[str, int] | None:
    """``pg_restore --list`` of the stored object (plain dumps: the header was sniffed)."""
    if record.encrypted and decrypt is None:
        raise ArchiveError(
            "this upload is age-encrypted and the service has no identity: set "
            "PGVAULT_AGE_IDENTITY_FILE or upload it decrypted"
        )
    pg_restore = tools.choose("pg_restore", None, settings.bin_dir).path
    opened = open_layers(store.open_read(key), decrypt)
    record.format = _FORMAT_OF_KIND[opened.kind]  # type: ignore[assignment]
    with opened.stream as stream, tempfile.TemporaryDirectory(prefix="pgvault-up-") as tmp:
        try:
            entries = archives.toc_of_stored(pg_restore, stream, opened.kind, Path(tmp))
        except PgvaultError as exc:
            raise ArchiveError(f"the upload is not a readable dump: {exc}") from exc
    return archives.object_counts(entries) if entries else None


def open_backup(
    settings: Settings, catalog: Catalog, backup_id: str
) -> tuple[BackupRecord, IO[bytes]]:
    """A completed backup's record and a stream of its stored bytes (from the first intact
    copy); the caller closes the stream.

    Raises:
        NotFound: unknown id, not completed, or no intact stored object.
    """
    record = catalog.get_backup(backup_id)
    if record.status != "completed":
        raise NotFound(f"backup {record.id} is {record.status}: only completed ones download")
    store = copies.readable_location(settings, catalog, record)
    return record, store.open_read(record.storage_key)


def download_name(record: BackupRecord) -> str:
    """The file name a download is offered as: the last part of its storage key."""
    return record.storage_key.rsplit("/", 1)[-1]
