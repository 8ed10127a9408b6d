"""Planning a prune: each database's policies from the config, its rows from the catalog,
and the plan of :func:`pgvault.operations.retention_copies.plan` with the Object Lock of each
copy it would delete read from its target (no change made anywhere).

:func:`plan` is one database's, :func:`plans` many databases' read together (a dry run over
every database). :mod:`pgvault.operations.prune` carries a plan out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial

from pgvault import storage
from pgvault.catalog import Catalog
from pgvault.catalog import retention as rows
from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.operations import retention, retention_copies
from pgvault.operations.retention_copies import LEGAL_HOLD, Plan
from pgvault.storage import Storage

Planned = tuple[Plan, dict[str, BackupRecord], dict[tuple[str, str], str]]
"""A plan, ``{backup id: row}`` of its rows, and ``{(backup id, target): error}`` of the
copies whose Object Lock could not be read (they are not deleted)."""


def policies(
    settings: Settings, database: str
) -> tuple[RetentionSettings | None, dict[str, RetentionSettings]]:
    """The database's policy and its schedules' own policies, from the config."""
    db = settings.databases.get(database)
    if db is None:
        return None, {}
    own = {name: s.retention for name, s in db.schedules.items() if s.retention is not None}
    return db.retention, own


def plan(
    settings: Settings,
    catalog: Catalog,
    database: str,
    *,
    keep_last: int | None = None,
    now: datetime | None = None,
    force: bool = False,
    every_row: bool = False,
) -> Planned:
    """The plan for one database (no change made), with the Object Lock of each copy to be
    deleted read from its target.

    Args:
        keep_last: replace the configured policies by "keep the last N" (ad hoc).
        now: the current time (default: now, UTC).
        force: override the hold.
        every_row: decide every live row; by default the young completed backups that the
            policy's ``max_age_days`` keeps are read only as far back as the counting rules
            need (:func:`~pgvault.operations.retention.horizon`), the rest counted in
            ``plan.unlisted``.

    Returns:
        ``(plan, {backup id: row}, {(backup id, target): error})``, the errors being the
        copies whose lock could not be read (they are not deleted).

    Raises:
        ConfigError: a policy's time zone is unknown.
        CatalogError: the catalog cannot be read.
    """
    at = now or datetime.now(UTC)
    bound = _bound(settings, database, at, keep_last, every_row)
    history = rows.histories(catalog, {database: bound})[database]
    return _decided(settings, database, history, at, keep_last, force)


def plans(
    settings: Settings,
    catalog: Catalog,
    databases: Sequence[str],
    *,
    keep_last: int | None = None,
    now: datetime | None = None,
    force: bool = False,
    every_row: bool = False,
) -> Iterator[tuple[str, Planned]]:
    """:func:`plan` of each of ``databases``, in that order, one at a time: what a dry run
    over every database shows. The databases whose young rows are read only as far back as
    their policy needs (see :func:`plan`) are read together, in one transaction with a few
    statements for all of them (:func:`pgvault.catalog.retention.histories`), not a few
    each; a database whose every live row is read is read when its turn comes (its rows
    are the bulk, so only one database's are held at a time).

    Args:
        databases: the database names; keep_last, now, force, every_row: as for
            :func:`plan` (one ``now`` for all of them).

    Yields:
        ``(database, its plan as :func:`plan` returns it)``.

    Raises:
        ConfigError: a policy's time zone is unknown.
        CatalogError: the catalog cannot be read.
    """
    at = now or datetime.now(UTC)
    bounds = {name: _bound(settings, name, at, keep_last, every_row) for name in databases}
    found = rows.histories(catalog, {n: b for n, b in bounds.items() if b is not None})
    for name in databases:
        if name in found:
            history = found.pop(name)
        else:
            history = rows.histories(catalog, {name: None})[name]
        yield name, _decided(settings, name, history, at, keep_last, force)


def _bound(
    settings: Settings, database: str, at: datetime, keep_last: int | None, every_row: bool
) -> rows.Bound | None:
    """How far back the young rows of ``database`` are read at ``at`` (None: every row)."""
    policy, own = policies(settings, database)
    if every_row or keep_last is not None or policy is None:
        return None
    bound = retention.horizon(policy, own, at)
    if bound is None:
        return None
    return rows.Bound(bound, retention.counted(policy), partial(retention.covers, policy))


def _decided(
    settings: Settings,
    database: str,
    history: rows.RetentionHistory,
    at: datetime,
    keep_last: int | None,
    force: bool,
) -> Planned:
    """The plan of ``database`` from its ``history``, and the Object Lock of each copy the
    first plan deletes read from its target (see :func:`plan`)."""
    policy, own = policies(settings, database)
    by_id = {r.id: r for r in history.backups}

    def decide(locked: retention_copies.Locks | None) -> Plan:
        return retention_copies.plan(
            database, history, policy, own, at, keep_last=keep_last, locks=locked, force=force
        )

    first = decide(None)
    if first.held or not first.deletions():
        return first, by_id, {}
    found, errors = _read_locks(settings, by_id, first.deletions())
    return decide(found), by_id, errors


def _read_locks(
    settings: Settings, by_id: dict[str, BackupRecord], wanted: list[tuple[str, str]]
) -> tuple[dict[tuple[str, str], datetime], dict[tuple[str, str], str]]:
    """The retain-until date of each ``(backup id, target)`` object under a lock."""
    stores: dict[str, Storage] = {}
    found: dict[tuple[str, str], datetime] = {}
    errors: dict[tuple[str, str], str] = {}
    for backup_id, target in wanted:
        try:
            if target not in stores:
                stores[target] = storage.resolve(settings, target)
            info = stores[target].stat(by_id[backup_id].storage_key)
        except PgvaultError as exc:
            errors[(backup_id, target)] = f"lock state unreadable: {exc}"
            continue
        if info is not None and info.legal_hold:
            found[(backup_id, target)] = LEGAL_HOLD
        elif info is not None and info.retain_until is not None:
            found[(backup_id, target)] = info.retain_until
    return found, errors
