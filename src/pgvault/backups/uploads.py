"""Uploaded dumps stored as backups (trigger ``upload``), checked before anything uses them.

An upload (:func:`receive_upload`) is checked before any database is touched::

    first 1 MiB -> gzip/zstd/age layers and the dump kind detected by content (not a dump:
    ArchiveError) -> the whole stream -> sha256 + byte count (over the limit: TooLarge)
    -> Storage writer, and meanwhile the wholeness check (:mod:`pgvault.dumps.wholeness`:
    custom TOC and every data block, directory tar and every file its TOC names, plain
    trailer and no psql meta-command) -> commit only if whole -> pg_restore --list of what
    was stored -> recorded like every backup (row, manifest)

An upload that is not whole (or too large) leaves nothing: no object, no catalog row.

It is named by the database's own name template and time zone and stored on its first
storage target, exactly as a pg_dump backup of that database would be. A restore of it then
goes through :func:`pgvault.restores.run` like any other backup.
"""

from __future__ import annotations

import io
import logging
from typing import IO

from pgvault import runtime, storage, workdirs
from pgvault.backups import naming
from pgvault.backups.plan import choose_storage, storage_key
from pgvault.backups.record import recording
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps import toc
from pgvault.dumps.layers import DecryptHook, HashingWriter, open_layers, sniff_layer
from pgvault.dumps.wholeness import StreamCheck
from pgvault.errors import ArchiveError, PgvaultError, TooLarge
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
        ArchiveError: not a dump, not whole (cut short), holding a psql meta-command, or
            pg_restore cannot read it (nothing kept, no row).
        TooLarge: more than ``limit`` bytes (nothing kept, no row).
        StorageError: the storage target failed.
    """
    head = upload.read(CHUNK)
    kind, layers = _sniff(head)
    if "age" in layers and decrypt is None:
        raise ArchiveError(
            "this upload is age-encrypted and the service has no identity: set "
            "PGVAULT_AGE_IDENTITY_FILE or upload it decrypted"
        )
    first, _copies = choose_storage(settings, target)
    store = storage.resolve(settings, first, database=target.name)
    record = _new_record(settings, target, store.name, kind, layers, created_by, filename)
    with recording(catalog, store, record, discard_on=(ArchiveError, TooLarge)):
        _store(store, record.storage_key, head, upload, limit, record, StreamCheck(decrypt))
        record.object_counts = _check(settings, store, record.storage_key, decrypt, record)
    log.info("upload %s stored as backup %s (%s bytes)", filename, record.id, record.size_bytes)
    return record


def _sniff(head: bytes) -> tuple[str, list[str]]:
    """The dump kind and layers of an upload, from its first bytes (age hides the rest)."""
    if sniff_layer(head) == "age":
        return "custom", ["age"]
    opened = open_layers(io.BytesIO(head))  # raises ArchiveError for a non-dump
    return opened.kind, list(opened.layers)


def _new_record(
    settings: Settings,
    target: DatabaseTarget,
    storage_name: str,
    kind: str,
    layers: list[str],
    created_by: str | None,
    filename: str | None,
) -> BackupRecord:
    dump_format = _FORMAT_OF_KIND[kind]
    compression = next((x for x in layers if x in ("zstd", "gzip")), "none")
    compressed_by = "pgvault" if compression != "none" else None
    ext = naming.extension(dump_format, compression, compressed_by)
    started = runtime.now()
    backup_id = runtime.new_id(started)
    key = storage_key(
        settings,
        target,
        backup_id=backup_id,
        started=started,
        dump_format=dump_format,
        ext=ext + (".age" if "age" in layers else ""),
        trigger="upload",
    )
    return BackupRecord(
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
        storage=storage_name,
        storage_key=key,
        started_at=started,
        created_by=created_by,
        runner=runtime.runner_id(),
        labels={"uploaded_as": filename[:200]} if filename else {},
    )


def _store(
    store: storage.Storage,
    key: str,
    head: bytes,
    upload: IO[bytes],
    limit: int,
    record: BackupRecord,
    check: StreamCheck,
) -> None:
    writer = store.open_write(key)
    hashing = HashingWriter(writer)
    try:
        chunk = head
        while chunk:
            if hashing.size + len(chunk) > limit:
                raise TooLarge(
                    f"the upload is larger than the limit of {limit} bytes "
                    "(api.max_upload_bytes): restore it from a file on the host or raise "
                    "the limit"
                )
            hashing.write(chunk)
            check.feed(chunk)
            chunk = upload.read(CHUNK)
        check.result()  # not whole: ArchiveError, before anything is committed
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
    """``pg_restore --list`` of the stored object (plain dumps: checked while stored)."""
    pg_restore = tools.choose("pg_restore", None, settings.bin_dir).path
    opened = open_layers(store.open_read(key), decrypt)
    record.format = _FORMAT_OF_KIND[opened.kind]  # type: ignore[assignment]
    with opened.stream as stream, workdirs.workdir(settings.home, "upload") as tmp:
        try:
            entries = toc.toc_of_stored(pg_restore, stream, opened.kind, tmp)
        except PgvaultError as exc:
            raise ArchiveError(f"the upload is not a readable dump: {exc}") from exc
    return toc.object_counts(entries) if entries else None
