"""Counting a backup's rows in the very snapshot pg_dump dumps, while pg_dump runs.

The backup's connection exports its snapshot (``pg_export_snapshot()``) for
``pg_dump --snapshot``; a :class:`SnapshotCounter` imports the same snapshot on a second
connection (``SET TRANSACTION SNAPSHOT``, PostgreSQL docs "Snapshot Synchronization
Functions") and counts every user table there while pg_dump streams, so the counts cost no
wall time after the dump. The counts are exactly those of the dumped data; the tables the
dump holds are picked from them afterwards (its TOC).
"""

from __future__ import annotations

import threading

from psycopg import sql

from pgvault.errors import BackupError
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo


class SnapshotCounter:
    """Counts every user table's rows in ``snapshot`` in a thread (started on enter)."""

    def __init__(self, conn: ConnInfo, snapshot: str) -> None:
        self._conn = conn
        self._snapshot = snapshot
        self._counts: dict[str, int] = {}
        self._problem: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="row-counts", daemon=True)

    def _run(self) -> None:
        try:
            with server.connect(self._conn) as conn:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot))
                )
                self._counts = server.count_rows(conn, server.user_tables(conn))
                conn.execute("COMMIT")
        except BaseException as exc:  # reported by counts()
            self._problem = exc

    def __enter__(self) -> SnapshotCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()

    def counts(self, tables: list[tuple[str, str]]) -> dict[str, int]:
        """The counts of ``tables`` (``"schema.table"`` keys), once counting is done.

        Raises:
            BackupError: the counting connection failed.
        """
        self._thread.join()
        if self._problem is not None:
            raise BackupError(f"rows could not be counted: {self._problem}") from self._problem
        wanted = {f"{s}.{t}" for s, t in tables}
        return {name: n for name, n in self._counts.items() if name in wanted}
