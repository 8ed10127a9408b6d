"""Restores that never leave a team with less than it had.

Owns the way a dump gets back into a database: ``plan`` (source, target, preview of objects
and rows), ``policy`` (the guards every caller passes), ``run`` (the recorded run of a plan),
``steps`` (swap / clean / recreate, each with its undo), ``integrity`` (the stored bytes
against the catalog's sha256, or one download checked on the way), ``journal`` and
``repair`` (every step written first; a dead run rolled forward or back at the next start),
``privileges`` (SQL from outside runs as the database owner), ``loading`` (pg_restore or
psql, error triage, version fallback), ``globals`` and ``leftovers``. It never takes a backup itself
except the safety backup through :mod:`pgvault.backups`.
"""

from __future__ import annotations

from pgvault.restores.leftovers import drop_leftover, leftovers
from pgvault.restores.plan import (
    RestorePlan,
    RestorePreview,
    RestoreRequest,
    TableCheck,
    client_tools,
    plan,
    resolve_target,
)
from pgvault.restores.repair import Repaired, repair_unfinished, unfinished
from pgvault.restores.run import check_policy, restore, run
from pgvault.restores.steps import PRE_RESTORE_MARK, SCRATCH_MARK, check_counts, side_name

__all__ = [
    "PRE_RESTORE_MARK",
    "SCRATCH_MARK",
    "Repaired",
    "RestorePlan",
    "RestorePreview",
    "RestoreRequest",
    "TableCheck",
    "check_counts",
    "check_policy",
    "client_tools",
    "drop_leftover",
    "leftovers",
    "plan",
    "repair_unfinished",
    "resolve_target",
    "restore",
    "run",
    "side_name",
    "unfinished",
]
