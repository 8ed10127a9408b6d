"""Applying retention: plan with :mod:`~pgvault.operations.retention_copies`, then delete
safely, one copy at a time.

For each database, under the lock ``prune:<database>``: the rows and copies come from
:func:`pgvault.catalog.retention.histories` (a dry run, which changes nothing, reads every
database's at once and takes no lock); a first plan names the copies to delete; the
retain-until date of each of those objects is read (S3 Object Lock) and the final plan
keeps the locked ones, so no delete is tried on them. Then each copy is deleted with
:func:`pgvault.backups.copies.delete_copy` (its other copies are untouched; the row is
marked ``deleted``, labelled ``deleted_by=retention``, with its last copy). A storage error
stops that copy's deletion only and is reported in its item.

While retention is held (the newest backup attempt failed, or no completed backup within
the policy's shortest period) nothing is deleted; the hold is recorded in the catalog and
notified once (``retention_held``) until it lifts. ``force`` (``pgvault prune --force``)
overrides the hold, never ``minimum_redundancy`` nor a lock, and is written to the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pgvault import notify, storage
from pgvault.catalog import Catalog, audit, days, locks
from pgvault.catalog import retention as rows
from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError, Refused
from pgvault.operations import retention
from pgvault.operations.prune_plans import Planned as Planned
from pgvault.operations.prune_plans import plan as plan
from pgvault.operations.prune_plans import plans as plans
from pgvault.operations.prune_plans import policies as policies
from pgvault.operations.retention_copies import Plan

log = logging.getLogger(__name__)

DELETED_BY_LABEL = days.PRUNED_BY[0]
"""The label of a row retention deleted (``deleted_by=retention``)."""


@dataclass(frozen=True)
class CopyItem:
    """One copy's outcome: ``target`` (storage target name or URL), the decision and why,
    whether it was deleted, and the one-line error when its deletion failed."""

    target: str
    keep: bool
    reasons: tuple[str, ...]
    deleted: bool = False
    error: str | None = None


@dataclass(frozen=True)
class PruneItem:
    """One row's outcome.

    Attributes:
        database, backup_id, status, trigger, started_at (UTC), size_bytes: from the row.
        keep: the row stays (some copy is kept); ``reasons`` says which rule.
        deleted: the row was marked deleted (False in a dry run or on error).
        error: why a deletion failed (one line), else None.
        copies: each stored copy's outcome, primary first (completed backups).
        protected: one of the ``minimum_redundancy`` newest completed backups.
        held: why retention of the database is held (nothing deleted), else None.
    """

    database: str
    backup_id: str
    status: str
    trigger: str
    started_at: datetime
    size_bytes: int | None
    keep: bool
    reasons: tuple[str, ...]
    deleted: bool = False
    error: str | None = None
    copies: tuple[CopyItem, ...] = field(default=())
    protected: bool = False
    held: str | None = None


@dataclass(frozen=True)
class PruneReport:
    """What :func:`apply` did or would do.

    Attributes:
        items: one per row decided, per database newest first.
        unlisted: ``{database: n}`` young completed backups its policy's ``max_age_days``
            keeps that were not decided one by one (``every_row`` lists them).
    """

    items: list[PruneItem]
    unlisted: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        """How many backups are kept, listed or not."""
        return sum(1 for i in self.items if i.keep) + sum(self.unlisted.values())


def hold_of(
    settings: Settings, database: str, history: list[BackupRecord], now: datetime
) -> str | None:
    """Why the configured retention of ``database`` is held at ``now`` (for health), or
    None: not held, or no retention rule at all (then nothing completed is deleted anyway).

    Args:
        history: the database's recent rows (any order).
    """
    if not _ruled(settings, database):
        return None
    policy, own = policies(settings, database)
    return retention.hold_reason(history, [policy or RetentionSettings(), *own.values()], now)


def _ruled(settings: Settings, database: str) -> bool:
    policy, own = policies(settings, database)
    return any(p.has_rules() for p in [policy or RetentionSettings(), *own.values()])


def apply(
    settings: Settings,
    catalog: Catalog,
    *,
    database: str | None = None,
    dry_run: bool = False,
    keep_last: int | None = None,
    now: datetime | None = None,
    force: bool = False,
    reason: str | None = None,
    actor: str | None = None,
    every_row: bool = False,
) -> PruneReport:
    """Apply retention to one database or (None) every configured or catalogued one.

    Each database is pruned under the lock ``prune:<database>``, its rows read under it; a
    database whose prune is already running elsewhere is skipped (logged). A dry run
    deletes and records nothing, so it takes no lock: the rows of every database are read
    together (:func:`plans`), a few statements for all of them. Nothing raises for one
    copy's storage error: it is reported in its item's ``error`` and the others go on.

    Args:
        dry_run: decide and report only (no hold is recorded, nothing notified).
        keep_last: ad-hoc "keep the last N" instead of the configured policies.
        now: the current time (default: now, UTC).
        force: delete even while retention is held (the CLI's ``--force``); recorded in the
            audit log with ``reason`` and ``actor``.
        every_row: decide and list every live row (see :func:`plan`).

    Returns:
        One item per row decided, and the count of the young ones kept unlisted.

    Raises:
        ConfigError: a policy's time zone is unknown.
        CatalogError: the catalog cannot be read.
    """
    if database is not None:
        names = [database]
    else:
        names = sorted(set(settings.databases) | catalog.backup_databases())
    report = PruneReport([])
    if dry_run:  # nothing changes, so no lock: the bounded reads go together
        at = now or datetime.now(UTC)
        found = plans(
            settings, catalog, names, keep_last=keep_last, now=at, force=force, every_row=every_row
        )
        for name, planned in found:
            _report(settings, catalog, report, name, planned, dry_run=True)
        return report
    for name in names:
        with locks.exclusive(settings, catalog, f"prune:{name}") as got:
            if not got:
                log.info("retention of %s is already being applied elsewhere: skipped", name)
                continue
            planned = plan(
                settings,
                catalog,
                name,
                keep_last=keep_last,
                now=now,
                force=force,
                every_row=every_row,
            )
            _record_hold(settings, catalog, planned[0], now or datetime.now(UTC))
            done = _report(settings, catalog, report, name, planned, dry_run=False)
            if planned[0].forced:
                _audit_force(catalog, planned[0], done, reason, actor)
    return report


def _report(
    settings: Settings,
    catalog: Catalog,
    report: PruneReport,
    name: str,
    planned: Planned,
    *,
    dry_run: bool,
) -> list[PruneItem]:
    """Carry out the plan of database ``name`` (nothing in a dry run) and add its items and
    unlisted count to ``report``; returns its items."""
    found, by_id, errors = planned
    done = [
        _carry_out(settings, catalog, by_id[d.backup_id], d, found, errors, dry_run)
        for d in found.decisions
    ]
    report.items.extend(done)
    if found.unlisted:
        report.unlisted[name] = found.unlisted
    return done


def _carry_out(
    settings: Settings,
    catalog: Catalog,
    record: BackupRecord,
    decision: retention.Decision,
    found: Plan,
    errors: dict[tuple[str, str], str],
    dry_run: bool,
) -> PruneItem:
    item = PruneItem(
        database=record.database,
        backup_id=record.id,
        status=record.status,
        trigger=record.trigger,
        started_at=record.started_at,
        size_bytes=record.size_bytes,
        keep=decision.keep,
        reasons=decision.reasons,
        copies=tuple(
            CopyItem(c.target, c.keep, c.reasons, error=errors.get((record.id, c.target)))
            for c in decision.copies
        ),
        protected=record.id in found.protected,
        held=found.hold if found.held else None,
    )
    if dry_run or (decision.keep and all(c.keep for c in decision.copies)):
        unread = [f"{c.target}: {c.error}" for c in item.copies if c.error]
        return replace(item, error="; ".join(unread) or None)
    record = catalog.get_backup(record.id)  # whole: retention decided on slim rows
    if not decision.copies:
        return _delete_row(settings, catalog, record, item)
    outcomes = list(item.copies)
    drops = [c.target for c in decision.copies if not c.keep]
    ordered = [t for t in drops if t != record.storage] + [t for t in drops if t == record.storage]
    row_gone = False
    for target in ordered:
        index = next(i for i, c in enumerate(outcomes) if c.target == target)
        error = errors.get((record.id, target))
        if error is None:
            try:
                row_gone = _delete_copy(settings, catalog, record, target)
            except PgvaultError as exc:
                error = str(exc)
        if error is not None:
            log.warning("retention could not delete backup %s on %s: %s", record.id, target, error)
        outcomes[index] = replace(outcomes[index], deleted=error is None, error=error)
    failed = [c for c in outcomes if c.error]
    log.info(
        "retention deleted %s of backup %s of %s (%s)",
        "the row and every copy" if row_gone else f"{len(drops) - len(failed)} copy(ies)",
        record.id,
        record.database,
        "; ".join(decision.reasons),
    )
    return replace(
        item,
        deleted=row_gone,
        copies=tuple(outcomes),
        error="; ".join(f"{c.target}: {c.error}" for c in failed) or None,
    )


def _delete_copy(settings: Settings, catalog: Catalog, record: BackupRecord, target: str) -> bool:
    """:func:`pgvault.backups.copies.delete_copy` by retention (imported when deleting: a dry
    run never loads the backup machinery)."""
    from pgvault.backups import copies

    return copies.delete_copy(settings, catalog, record, target, by="retention")


def _delete_row(
    settings: Settings, catalog: Catalog, record: BackupRecord, item: PruneItem
) -> PruneItem:
    """Delete a failed or interrupted row: whatever its writer left, then the row."""
    try:
        if record.storage and record.storage_key:
            from pgvault.backups import copies  # deleting: the backup machinery, now

            store = storage.resolve(settings, record.storage)
            for key in copies.stored_keys(record):
                store.discard_partial(key)
                store.delete(key)
        record.status = "deleted"
        record.labels = {**record.labels, DELETED_BY_LABEL: "retention"}
        catalog.save_backup(record)
    except PgvaultError as exc:
        log.warning("retention could not delete backup %s: %s", record.id, exc)
        return replace(item, error=str(exc))
    log.info("retention deleted %s backup %s of %s", record.status, record.id, record.database)
    return replace(item, deleted=True)


def _record_hold(settings: Settings, catalog: Catalog, found: Plan, now: datetime) -> None:
    """Keep the catalog's hold marker in step and notify ``retention_held`` once per hold.

    Only databases with retention rules are told about (without rules nothing completed
    would be deleted anyway).
    """
    if found.hold is None or not _ruled(settings, found.database):
        if rows.clear_hold(catalog, found.database):
            log.info("retention of %s resumes", found.database)
        return
    hold = rows.get_hold(catalog, found.database) or rows.HoldRecord(
        database=found.database, reason=found.hold, since=now
    )
    log.warning("retention of %s is held: %s", found.database, found.hold)
    if hold.notified_at is None:
        notify.notify(
            settings,
            "retention_held",
            found.database,
            detail=f"nothing is deleted while {found.hold}; "
            f"the {found.minimum_redundancy} newest completed backups are kept in any case",
        )
        hold = hold.model_copy(update={"notified_at": now})
    rows.save_hold(catalog, hold.model_copy(update={"reason": found.hold}))


def _audit_force(
    catalog: Catalog,
    found: Plan,
    done: list[PruneItem],
    reason: str | None,
    actor: str | None,
) -> None:
    deleted = sum(1 for i in done for c in i.copies if c.deleted) + sum(
        1 for i in done if i.deleted and not i.copies
    )
    audit.record(
        catalog,
        actor=actor,
        action="retention force",
        target=f"database={found.database}",
        detail=f"hold overridden ({found.hold}); reason: {reason or 'none given'}; "
        f"{deleted} deletion(s)",
    )


def delete_backup(
    settings: Settings,
    catalog: Catalog,
    backup_id: str,
    *,
    force: bool = False,
    actor: str | None = None,
) -> BackupRecord:
    """Delete one backup by id (``pgvault delete``, ``DELETE /backups/{id}``), unless it is
    one of its database's ``minimum_redundancy`` newest completed backups (as Barman's
    ``delete`` refuses to go below ``minimum_redundancy``).

    Args:
        force: delete it anyway (``pgvault delete --force``; the API never does); written
            to the audit log with ``actor``.

    Raises:
        NotFound: unknown id.
        Refused: the backup is protected by ``minimum_redundancy`` and ``force`` is False.
    """
    record = catalog.get_backup(backup_id)
    reason = None
    if record.status == "completed":
        policy, own = policies(settings, record.database)
        floor = retention.protected(rows.history(catalog, record.database).backups, policy, own)
        reason = floor.get(record.id)
    if reason is not None and not force:
        raise Refused(
            f"backup {record.id} is one of the newest completed backups of "
            f"{record.database} ({reason}): lower minimum_redundancy in the retention of "
            f"databases.{record.database}, or use pgvault delete --force"
        )
    from pgvault import backups

    deleted = backups.delete(settings, catalog, backup_id)
    if reason is not None:
        audit.record(
            catalog,
            actor=actor,
            action="delete --force",
            target=f"backup={record.id}",
            detail=f"deleted despite {reason} of {record.database}",
        )
    return deleted
