"""Verifying backups: the stored bytes, the archive's structure, and (``--full``) a restore.

Quick verification re-reads the stored object once: its size and sha256 must equal the
catalog's, and the dump inside must be whole (:mod:`pgvault.dumps.wholeness`: a custom
archive's TOC and every data block, a directory archive's TOC and every file it names, a
plain dump's trailer and no psql meta-command), as an upload is checked when received.
Full verification also restores it into a scratch database (journaled, so a crash leaves
nothing behind: :mod:`pgvault.restores.repair`; an upload's SQL runs as a temporary role
that owns the scratch database, never as a superuser), compares every table's row count
with those recorded at backup time, and drops the scratch database. The result and time
are recorded in the catalog.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, cast

import psycopg
from psycopg import sql

from pgvault import restores, runtime, storage, workdirs
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps import wholeness
from pgvault.dumps.layers import DecryptHook, HashingReader, open_layers
from pgvault.errors import PgvaultError, VerifyError
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores import privileges, repair
from pgvault.restores.journal import Journal, journaled, session_tag
from pgvault.restores.loading import LoadOptions, Source, load

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]


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
            counts = _restore_and_count(settings, catalog, record, server_conn, decrypt, cancel)
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
    with store.open_read(record.storage_key) as raw:
        hashing = HashingReader(raw)
        if record.encrypted and decrypt is None:
            hashing.drain()  # the sha256 is of the stored (encrypted) bytes: no key needed
            _compare(record, hashing)
            return "sha256 ok (encrypted: give --identity to also parse the archive)"
        opened = open_layers(cast(IO[bytes], hashing), decrypt)
        with opened.stream as stream:
            wholeness.check_dump(stream, opened.kind)  # read to the end: every block there
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
    catalog: Catalog,
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
    entry_id = runtime.new_id()
    maintenance = session_tag(server_conn.with_dbname("postgres"), entry_id)
    with (
        journaled(
            settings,
            catalog,
            entry_id,
            "verify",
            maintenance,
            dbname=None,
            settle=lambda entry: repair.settle(settings, entry),
        ) as journal,
        server.connect(maintenance) as conn,
    ):
        known = {str(r[0]) for r in conn.execute("SELECT name FROM pg_settings").fetchall()}
        server_major, _version = server.server_version(conn)
        dump_major = _major(record.pg_dump_version)
        tool_set = restores.client_tools(settings, server_major, dump_major)
        journal.step("planned", scratch=scratch)
        with _scratch_login(conn, maintenance, scratch, record, journal) as (login, owner, opts):

            def reset() -> None:
                server.drop_database(conn, scratch)
                _create_scratch(conn, scratch, owner)

            _create_scratch(conn, scratch, owner)
            try:
                with workdirs.workdir(settings.home, "verify") as tmp:
                    load(
                        source,
                        login,
                        tool_set,
                        dataclasses.replace(opts, server_major=server_major, dump_major=dump_major),
                        tmp,
                        known_settings=lambda: known,
                        reset=reset,
                    )
                if cancel is not None and cancel.is_set():
                    raise VerifyError("verification cancelled")
                return restores.check_counts(
                    server_conn.with_dbname(scratch), record.row_counts or {}
                )
            finally:
                server.drop_database(conn, scratch)


@contextmanager
def _scratch_login(
    conn: Conn, maintenance: ConnInfo, scratch: str, record: BackupRecord, journal: Journal
) -> Iterator[tuple[ConnInfo, str | None, LoadOptions]]:
    """How the verification's load logs in, the scratch database's owner and the load's
    options: the configured role for pgvault's own backups; for an upload, a temporary role
    in the owner of the database it was uploaded for (as its restore would), else one that
    owns the scratch database itself (owners and grants of the archive skipped)."""
    if record.trigger != "upload" or not server.is_superuser(conn):
        yield maintenance.with_dbname(scratch), None, LoadOptions(jobs=1)
        return

    def note(role: str) -> None:
        journal.note(load_role=role, load_database=scratch)

    found = privileges.database_owner(conn, record.dbname)
    owner = found[0] if found is not None and not found[1] else None
    with privileges.temporary_role(conn, maintenance, owner, note) as role:
        if owner is not None:
            login = role.login(maintenance.with_dbname(scratch), set_role=owner)
            yield login, owner, LoadOptions(jobs=1)
        else:
            options = LoadOptions(jobs=1, no_owner=True, no_privileges=True)
            yield role.login(maintenance.with_dbname(scratch)), role.name, options


def _create_scratch(conn: Conn, name: str, owner: str | None) -> None:
    server.create_database_like(conn, name, None)
    if owner is not None:
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )


def _major(version: str | None) -> int | None:
    """``"18.6"`` -> 18."""
    head = (version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None
