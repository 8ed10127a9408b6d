"""The catalog: every backup, restore, job, account and audit event, in SQLite or PostgreSQL.

Owns all SQL that pgvault runs against its own database (no other package does): the engine
and Alembic migrations (``engine``), the tables (``tables``), typed rows (``records``), and one
module per kind of row — ``backups`` (with copies), ``restores``, ``stats`` (aggregates),
``days`` (per-day totals kept with every backup write), ``newest`` (each database's newest
rows for health), ``accounts`` (users, tokens, login
failures), ``jobs`` (with idempotency keys), ``audit``, ``unfinished`` (what a dead process
may have left open, in one query) — and named cross-process ``locks``.
Every listing and aggregate reads an index (never every row into Python). It knows nothing
of pg_dump, storage or HTTP.
"""

from __future__ import annotations

from pgvault.catalog.backups import BackupRows
from pgvault.catalog.engine import HEAD_REVISION, MIGRATIONS, utc_text
from pgvault.catalog.restores import RestoreRows
from pgvault.catalog.stats import StatsRows

__all__ = ["HEAD_REVISION", "MIGRATIONS", "Catalog", "utc_text"]


class Catalog(BackupRows, RestoreRows, StatsRows):
    """Access to the catalog database. Create with :meth:`Catalog.open` (``url``: SQLAlchemy
    URL, ``sqlite:///...`` or ``postgresql://...``)."""
