"""The steps of a restore into one server, each with its undo, each journaled.

::

    swap:     [planned] create scratch DB -> [loading] load (sha256 of the stored bytes
              checked meanwhile, or on the way of the one download a parallel load of a
              remote object makes) -> row counts and post-restore SQL -> [proven]
              -> [blocking] block connections, terminate sessions
              -> [live_renamed] rename live -> <db>_pre_restore_<ts>
              -> [scratch_renamed] rename scratch -> live -> [swapped] reopen the old one
    undo:     any failure before the renames drops the scratch database, the live one is
              untouched; a failure between the two renames renames live back. A crash
              anywhere is repaired from the journal by the next start
              (:mod:`pgvault.restores.repair`).
    clean:    in place, in one transaction (all or nothing), after the sha256 check.
    recreate: drop, create, load (the safety backup is the way back).

SQL from outside (a file, an upload) is loaded with the target owner's privileges
(:mod:`pgvault.restores.privileges`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pgvault import runtime, workdirs
from pgvault.catalog.records import BackupRecord
from pgvault.databases import DatabaseTarget
from pgvault.errors import PgvaultError, RestoreError
from pgvault.postgres import runner, server
from pgvault.postgres.commands import psql_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.progress import Report
from pgvault.restores import privileges
from pgvault.restores.integrity import IntegrityCheck, fetchable
from pgvault.restores.journal import Journal
from pgvault.restores.loading import (
    LoadOptions,
    LoadResult,
    Source,
    Tools,
    default_jobs,
    load,
)

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
PRE_RESTORE_MARK = "_pre_restore_"
SCRATCH_MARK = "_pgvault_scratch_"


def side_name(dbname: str, mark: str, stamp: str) -> str:
    """``<db><mark><stamp>``, with the database part cut so the name fits 63 bytes."""
    room = server.MAX_IDENTIFIER - len(mark) - len(stamp)
    head = dbname.encode()[:room].decode("utf-8", "ignore")
    return f"{head}{mark}{stamp}"


@dataclass(frozen=True)
class Trust:
    """Whose privileges a load runs with: ``untrusted`` SQL came from outside pgvault (a
    file, an upload) and runs as the database owner unless ``as_superuser``."""

    untrusted: bool = False
    as_superuser: bool = False


class Steps:
    """The steps of one restore, sharing one maintenance connection to the target server."""

    def __init__(
        self,
        conn: Conn,
        target: DatabaseTarget,
        source: Source,
        record: BackupRecord | None,
        tool_set: Tools,
        options: LoadOptions,
        known: set[str],
        step: Callable[[str], None],
        cancel: threading.Event | None,
        *,
        journal: Journal,
        home: Path,
        trust: Trust = Trust(),  # noqa: B008 - frozen
    ) -> None:
        self.conn = conn
        self.target = target
        self.dbname = target.conn.dbname
        self.source = source
        self.record = record
        self.tools = tool_set
        self.options = options
        self.known = known
        self.step = step
        self.cancel = cancel
        self.journal = journal
        self.home = home
        self.trust = trust
        self.integrity = IntegrityCheck(source, record)
        self.report: Report | None = None  # the load's progress (TOC entries)

    def _load_into(
        self, dbname: str, reset: Callable[[], None], *, fetch: bool = False
    ) -> LoadResult:
        """Load the source into ``dbname``; with ``fetch``, download it once into the work
        directory first, its sha256 checked on the way (:meth:`IntegrityCheck.fetch`)."""
        if self.cancel is not None and self.cancel.is_set():
            raise RestoreError("restore cancelled before loading; nothing changed")
        self.step(f"loading {self.source.label} into {dbname}")

        def note_role(role: str) -> None:
            self.journal.note(load_role=role, load_database=dbname)

        with (
            privileges.owner_login(
                self.conn,
                self.target.conn,
                dbname,
                untrusted=self.trust.untrusted,
                as_superuser=self.trust.as_superuser,
                note_role=note_role,
            ) as login,
            workdirs.workdir(self.home, "restore") as tmp,
        ):
            source = self.integrity.fetch(tmp / "stored.dump", self.step) if fetch else self.source
            return load(
                source,
                login,
                self.tools,
                self.options,
                tmp,
                known_settings=lambda: self.known,
                reset=reset,
                progress=self.report,
                entries=sum((self.record.object_counts or {}).values()) if self.record else None,
            )

    def prove(self, dbname: str) -> None:
        """Compare row counts with those recorded at backup time, then run post-restore SQL.

        Raises:
            RestoreError: a table's count differs, or the post-restore SQL failed.
        """
        self.step("checking row counts")
        recorded = (self.record.row_counts if self.record else None) or {}
        check_counts(self.target.conn.with_dbname(dbname), recorded)
        sql_file = self.target.post_restore_sql
        if sql_file is not None:
            self.step(f"running post-restore SQL {sql_file}")
            argv = psql_command(
                self.tools.psql,
                self.target.conn.with_dbname(dbname).dsn(),
                file=sql_file,
                single_transaction=True,
            )
            try:
                runner.run(argv, env=self.target.conn.child_env())
            except PgvaultError as exc:
                raise RestoreError(f"post-restore SQL {sql_file} failed: {exc}") from exc

    def swap(self, live_exists: bool) -> str | None:
        """Load into a scratch database, prove it, then swap it in; return the old live name."""
        stamp = f"{runtime.now():%Y%m%d_%H%M%S}"
        scratch = side_name(self.dbname, SCRATCH_MARK, stamp)
        previous = side_name(self.dbname, PRE_RESTORE_MARK, stamp) if live_exists else None
        like = self.dbname if live_exists else None

        def reset() -> None:
            server.drop_database(self.conn, scratch)
            server.create_database_like(self.conn, scratch, like)

        self.journal.step("planned", scratch=scratch, previous=previous)
        server.create_database_like(self.conn, scratch, like)
        try:
            fetch = self.options.jobs > 1 and fetchable(self.source, self.record, self.home)
            if not fetch:
                self.integrity.start()  # hashes the stored object while it loads
            self.journal.step("loading")
            self._load_into(scratch, reset, fetch=fetch)
            self.integrity.result()
            self.prove(scratch)
            if self.cancel is not None and self.cancel.is_set():
                raise RestoreError("restore cancelled before the swap; nothing changed")
            self.journal.step("proven", proven=True)
            self.step("swapping the restored database in")
            return self._rename(scratch, previous)
        except BaseException:
            try:
                server.drop_database(self.conn, scratch)
            except PgvaultError:
                log.exception("could not drop scratch database %s", scratch)
            raise

    def _rename(self, scratch: str, previous: str | None) -> str | None:
        if previous is None:
            self.journal.step("scratch_renamed")
            server.rename_database(self.conn, scratch, self.dbname)
            self.journal.step("swapped")
            return None
        self.journal.step("blocking")
        server.allow_connections(self.conn, self.dbname, False)
        try:
            server.terminate_sessions(self.conn, self.dbname)
            self.journal.step("live_renamed")
            server.rename_database(self.conn, self.dbname, previous)
        except BaseException:
            server.allow_connections(self.conn, self.dbname, True)
            raise
        try:
            self.journal.step("scratch_renamed")
            server.rename_database(self.conn, scratch, self.dbname)
        except BaseException:
            server.rename_database(self.conn, previous, self.dbname)
            server.allow_connections(self.conn, self.dbname, True)
            raise
        self.journal.step("swapped")
        server.allow_connections(self.conn, previous, True)
        return previous

    def in_place(self, reset: Callable[[], None]) -> LoadResult:
        """Load into the live database (clean mode: one transaction, all or nothing)."""
        self.integrity.result()  # in place: prove the stored bytes before touching anything
        loaded = self._load_into(self.dbname, reset)
        self.prove(self.dbname)
        return loaded

    def recreate(self, live_exists: bool) -> LoadResult:
        """Drop and create the live database, then load into it."""

        found = privileges.database_owner(self.conn, self.dbname) if live_exists else None

        def reset() -> None:
            server.drop_database(self.conn, self.dbname)
            server.create_database_like(self.conn, self.dbname, None)
            if found is not None:  # the recreated database keeps its owner
                self.conn.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                        sql.Identifier(self.dbname), sql.Identifier(found[0])
                    )
                )

        self.integrity.result()
        if live_exists:
            self.step(f"dropping {self.dbname}")
        reset()
        return self.in_place(reset)


def _count_in_parallel(info: ConnInfo, expected: dict[str, int]) -> dict[str, int]:
    """``count(*)`` of the tables of ``expected`` on up to one connection per core (at most
    4), the tables shared out by their recorded row counts (largest first, to the least
    loaded connection): the proof costs about half the wall time on 2 cores."""
    workers = max(1, min(default_jobs(), len(expected)))
    bins: list[list[tuple[str, str]]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for name in sorted(expected, key=lambda n: expected[n], reverse=True):
        least = loads.index(min(loads))
        schema, table = name.split(".", 1)
        bins[least].append((schema, table))
        loads[least] += expected[name] + 1

    def count(tables: list[tuple[str, str]]) -> dict[str, int]:
        with server.connect(info) as conn:
            return server.count_rows(conn, tables)

    if workers == 1:
        return count(bins[0])
    found: dict[str, int] = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="row-counts") as pool:
        for part in pool.map(count, [b for b in bins if b]):
            found.update(part)
    return found


def check_counts(info: ConnInfo, recorded: dict[str, int]) -> dict[str, int]:
    """Count the rows of every recorded table in ``info``'s database and compare.

    Returns:
        the counts found, keyed ``"schema.table"``.

    Raises:
        RestoreError: a table is missing or its count differs (names the first three).
    """
    if not recorded:
        return {}
    with server.connect(info) as conn:
        present = {f"{s}.{t}" for s, t in server.user_tables(conn)}
    missing = [name for name in recorded if name not in present]
    found = _count_in_parallel(info, {n: recorded[n] for n in recorded if n in present})
    wrong = [
        f"{n}: {recorded[n]} recorded, {found[n]} restored"
        for n in found
        if found[n] != recorded[n]
    ]
    problems = [f"{n}: missing" for n in missing] + wrong
    if problems:
        raise RestoreError(
            f"restored copy does not match the backup ({len(problems)} tables): "
            + "; ".join(problems[:3])
        )
    return found
