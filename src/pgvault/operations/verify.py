"""Verifying backups: the stored bytes, the archive's structure, and (``--full``) a restore.

Quick verification re-reads the stored object once: its size and sha256 must equal the
catalog's, and the dump inside must parse (``pg_restore --list`` for custom and directory
archives; the ``dump complete`` trailer for plain SQL). Full verification also restores it
into a scratch database, compares every table's row count with those recorded at backup
time, and drops the scratch database. The result and time are recorded in the catalog.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from pgvault import restores, storage
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps import toc as archives
from pgvault.dumps.layers import DecryptHook, HashingReader, open_layers
from pgvault.errors import ArchiveError, PgvaultError, VerifyError
from pgvault.postgres import server, tools
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores.loading import LoadOptions, Source, load

log = logging.getLogger(__name__)

PLAIN_TRAILER = b"PostgreSQL database dump complete"


@dataclass
class VerifyResult:
    """The outcome of one verification."""

    backup_id: str
    ok: bool
    detail: str
    full: bool
    row_counts: dict[str, int] | None = None


def verify(
    settings: Settings,
    catalog: Catalog,
    backup_id: str,
    *,
    full: bool = False,
    server_conn: ConnInfo | None = None,
    decrypt: DecryptHook | None = None,
    cancel: threading.Event | None = None,
) -> VerifyResult:
    """Verify a completed backup and record the result in the catalog.

    Args:
        full: also restore into a scratch database and compare row counts.
        server_conn: the server for the scratch database (full only); its database name
            is ignored.

    Raises:
        NotFound: unknown id or missing object.
        VerifyError: the backup does not match (its row is marked ``verify_status=failed``).
    """
    record = catalog.get_backup(backup_id)
    if record.status != "completed":
        raise VerifyError(f"backup {record.id} is {record.status}: only completed ones verify")
    try:
        detail = _check_stored(settings, record, decrypt)
        counts = None
        if full:
            if server_conn is None:
                raise VerifyError("full verification needs a server to restore on", needs="server")
            counts = _restore_and_count(settings, record, server_conn, decrypt, cancel)
            detail += f"; {len(counts or {})} tables' rows match"
        result = VerifyResult(record.id, True, detail, full, counts)
    except PgvaultError as exc:
        result = VerifyResult(record.id, False, str(exc), full)
    record.verified_at = datetime.now(UTC)
    record.verify_status = "ok" if result.ok else "failed"
    record.verify_detail = result.detail
    catalog.save_backup(record)
    if not result.ok:
        raise VerifyError(f"backup {record.id} failed verification: {result.detail}")
    return result


def _check_stored(settings: Settings, record: BackupRecord, decrypt: DecryptHook | None) -> str:
    store = storage.resolve(settings, record.storage)
    pg_restore = tools.choose("pg_restore", None, settings.bin_dir).path
    with store.open_read(record.storage_key) as raw, tempfile.TemporaryDirectory() as tmp:
        hashing = HashingReader(raw)
        if record.encrypted and decrypt is None:
            hashing.drain()  # the sha256 is of the stored (encrypted) bytes: no key needed
            _compare(record, hashing)
            return "sha256 ok (encrypted: give --identity to also parse the archive)"
        opened = open_layers(cast(IO[bytes], hashing), decrypt)
        with opened.stream as stream:
            if opened.kind == "plain":
                tail = b""
                while chunk := stream.read(1024 * 1024):
                    tail = (tail + chunk)[-4096:]
                if PLAIN_TRAILER not in tail:
                    raise ArchiveError(
                        "plain dump is truncated: its 'dump complete' trailer is missing"
                    )
            else:
                archives.toc_of_stored(pg_restore, stream, opened.kind, Path(tmp))
                while stream.read(1024 * 1024):
                    pass  # decompress to the end: proves every frame is intact
            hashing.drain()
    _compare(record, hashing)
    return "sha256 and archive ok"


def _compare(record: BackupRecord, hashing: HashingReader) -> None:
    if hashing.size != record.size_bytes or hashing.sha256 != record.sha256:
        raise VerifyError(
            f"stored bytes differ from the catalog (size {hashing.size} vs {record.size_bytes}, "
            f"sha256 {hashing.sha256[:12]} vs {(record.sha256 or '')[:12]}): the object is corrupt"
        )


def _restore_and_count(
    settings: Settings,
    record: BackupRecord,
    server_conn: ConnInfo,
    decrypt: DecryptHook | None,
    cancel: threading.Event | None,
) -> dict[str, int]:
    store = storage.resolve(settings, record.storage)
    source = Source(
        record.id,
        lambda: store.open_read(record.storage_key),
        store.local_path(record.storage_key),
        decrypt,
    )
    scratch = restores.side_name(
        record.dbname, "_pgvault_verify_", f"{datetime.now(UTC):%Y%m%d_%H%M%S}"
    )
    maintenance = server_conn.with_dbname("postgres")
    with server.connect(maintenance) as conn:
        known = {str(r[0]) for r in conn.execute("SELECT name FROM pg_settings").fetchall()}
        server_major, _version = server.server_version(conn)
        dump_major = _major(record.pg_dump_version)
        tool_set = restores.client_tools(settings, server_major, dump_major)

        def reset() -> None:
            server.drop_database(conn, scratch)
            server.create_database_like(conn, scratch, None)

        server.create_database_like(conn, scratch, None)
        try:
            with tempfile.TemporaryDirectory(prefix="pgvault-verify-") as tmp:
                load(
                    source,
                    server_conn.with_dbname(scratch),
                    tool_set,
                    LoadOptions(jobs=1, server_major=server_major, dump_major=dump_major),
                    Path(tmp),
                    known_settings=lambda: known,
                    reset=reset,
                )
            if cancel is not None and cancel.is_set():
                raise VerifyError("verification cancelled")
            return restores.check_counts(server_conn.with_dbname(scratch), record.row_counts or {})
        finally:
            server.drop_database(conn, scratch)


def _major(version: str | None) -> int | None:
    """``"18.6"`` -> 18."""
    head = (version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None
