"""Physical backups and point-in-time recovery: the WAL archive (pg_receivewal streaming,
archive_command pushes), base backups (pg_basebackup, incremental chains), and recovery to
a time, an LSN or a restore point, into a directory or one database. Their retention and
schedules are :mod:`pgvault.operations`'s (``physical_retention``, ``physical_schedules``).

It drives PostgreSQL's own tools through :mod:`pgvault.postgres`, stores through
:mod:`pgvault.storage` and records through :mod:`pgvault.catalog.physical`; it never runs
SQL against the catalog itself and holds no CLI or HTTP code.
"""
