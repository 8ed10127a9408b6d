"""Running a restore plan: the policy first, then the steps of its mode, every outcome
recorded and notified.

::

    policy (environment, confirmation, passkey, recent backup) -> restore row 'running'
    -> safety backup of the live database -> [globals] -> steps of the mode (see steps.py)
    -> row 'completed' | 'failed' with one line; notifications at start, end and failure
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from pgvault import backups, files, notify, runtime
from pgvault.catalog import Catalog
from pgvault.catalog.journal import JournalKind
from pgvault.catalog.records import RestoreRecord
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError, Refused, RestoreError
from pgvault.postgres import server
from pgvault.progress import Report
from pgvault.progress import step as report_step
from pgvault.restores import policy, privileges, repair
from pgvault.restores.globals import apply_globals, read_globals
from pgvault.restores.journal import Journal, journaled, session_tag
from pgvault.restores.loading import LoadOptions
from pgvault.restores.plan import RestorePlan, RestoreRequest, plan
from pgvault.restores.steps import Conn, Steps, Trust

log = logging.getLogger(__name__)

StepReport = Report
"""Receives each step as it starts (``unit="steps"``, its ``detail`` one line of text) and
the load's ``loading`` events (TOC entries done of the archive's entries)."""


def check_policy(settings: Settings, catalog: Catalog, plan: RestorePlan) -> None:
    """Apply the restore policy to ``plan`` (see :mod:`pgvault.restores.policy`); shells may
    call it early to refuse before queueing, :func:`run` always calls it again.

    Raises:
        Refused: a guard refuses; nothing was touched.
    """
    request = plan.request
    policy.check(
        settings,
        catalog,
        request.target,
        confirm=request.confirm,
        passkey=request.passkey,
        safety_backup=request.safety_backup,
        target_exists=plan.preview.target_exists,
        client=request.client,
    )


def restore(
    settings: Settings,
    catalog: Catalog,
    request: RestoreRequest,
    *,
    progress: StepReport | None = None,
    cancel: threading.Event | None = None,
) -> RestoreRecord:
    """Plan (without a preview) and :func:`run` one restore.

    Raises:
        As :func:`pgvault.restores.plan.plan` and :func:`run`.
    """
    planned = plan(settings, catalog, request, preview=False)
    return run(settings, catalog, planned, progress=progress, cancel=cancel)


def run(
    settings: Settings,
    catalog: Catalog,
    plan: RestorePlan,
    *,
    progress: StepReport | None = None,
    cancel: threading.Event | None = None,
) -> RestoreRecord:
    """Restore as ``plan`` says, after the restore policy passed.

    Raises:
        Refused: a guard refused (nothing touched, nothing recorded).
        RestoreError: the restore failed; in ``swap`` and ``clean`` modes the live database
            is as it was, and no scratch database is left behind.
    """
    check_policy(settings, catalog, plan)
    request, target = plan.request, plan.target
    result = RestoreRecord(
        id=runtime.new_id(),
        backup_id=plan.record.id if plan.record else None,
        source=plan.source.label,
        target=target.conn.display(),
        dbname=target.conn.dbname,
        mode=request.mode,
        started_at=runtime.now(),
        created_by=request.created_by,
    )
    kind: JournalKind = request.mode
    # every session of this run carries its id, so a repair can end them (server side,
    # a CREATE DATABASE of a dead run may still be going on)
    tagged = dataclasses.replace(target, conn=session_tag(target.conn, result.id))
    tagged_plan = dataclasses.replace(plan, request=dataclasses.replace(request, target=tagged))
    try:
        with journaled(
            settings,
            catalog,
            result.id,
            kind,
            tagged.conn,
            dbname=target.conn.dbname,
            settle=lambda entry: repair.settle(settings, entry),
        ) as journal:  # the journal first and last: a row 'running' always has an open one
            catalog.save_restore(result)
            notify.notify(settings, "restore_started", target.name, restore=result)
            linked: list[files.LinkedRestore] = []  # file sets restored first, undone on failure
            try:
                with server.connect(tagged.conn.with_dbname("postgres")) as conn:
                    steps = (progress, cancel)
                    _carry_out(settings, catalog, tagged_plan, conn, result, journal, linked, steps)
            except BaseException as exc:
                for done in linked:
                    result.warnings += done.undo()
                _failed(settings, catalog, plan, result, exc)
                raise
            result.status = "completed"
            _close(catalog, result)
    except BaseException as exc:
        if isinstance(exc, RestoreError | Refused) or not isinstance(exc, PgvaultError):
            raise
        outcome = _outcome(plan, result)
        raise RestoreError(f"restore of {result.dbname} failed, {outcome}: {exc}") from exc
    notify.notify(settings, "restore_finished", target.name, restore=result)
    return result


def _carry_out(
    settings: Settings,
    catalog: Catalog,
    plan: RestorePlan,
    conn: Conn,
    result: RestoreRecord,
    journal: Journal,
    linked: list[files.LinkedRestore],
    reporting: tuple[StepReport | None, threading.Event | None],
) -> None:
    """The restore's steps in order: the privilege check, the globals read (and checked),
    the safety backup, the linked files, the globals applied, then the load by mode."""
    request, target = plan.request, plan.target
    progress, cancel = reporting
    dbname = target.conn.dbname
    exists = server.database_exists(conn, dbname)
    trust = Trust(untrusted=plan.untrusted, as_superuser=request.as_superuser)
    privileges.check(conn, dbname, untrusted=trust.untrusted, as_superuser=trust.as_superuser)
    globals_sql = None
    if request.with_globals and plan.record is not None and plan.record.globals_key:
        globals_sql = read_globals(settings, plan.record, request.decrypt)  # checked first
    if exists and request.safety_backup:
        report_step(progress, "taking a safety backup of the live database")
        safety = backups.create(
            settings,
            catalog,
            backups.BackupRequest(target=target, trigger="pre-restore"),
            progress=progress,
        )
        result.safety_backup_id = safety.id
    if request.with_files:  # the files first, the database swap last
        report_step(progress, "restoring the linked file snapshots")
        linked.append(
            files.restore_for_backup(settings, catalog, plan.record, decrypt=request.decrypt)
        )
    if globals_sql is not None:
        result.warnings += apply_globals(globals_sql, target.conn, plan.tools)
    steps = _steps(settings, plan, conn, journal, trust, reporting)
    if request.mode == "swap":
        result.previous_database = steps.swap(exists)
        if request.drop_previous and result.previous_database:
            server.drop_database(conn, result.previous_database)
            result.previous_database = None
    elif request.mode == "clean":
        if not exists:
            raise RestoreError(f"database {dbname!r} does not exist: restore it in swap mode")
        result.warnings += steps.in_place(reset=lambda: None).warnings
    else:
        result.warnings += steps.recreate(exists).warnings


def _steps(
    settings: Settings,
    plan: RestorePlan,
    conn: Conn,
    journal: Journal,
    trust: Trust,
    reporting: tuple[StepReport | None, threading.Event | None],
) -> Steps:
    """The load steps of ``plan`` (swap, clean, recreate) with the options its mode implies
    (clean: one transaction, no owners or privileges) and the target's known settings."""
    request = plan.request
    progress, cancel = reporting
    options = LoadOptions(
        jobs=plan.preview.jobs,
        clean=request.mode == "clean",
        no_owner=request.no_owner or request.mode == "clean",
        no_privileges=request.no_privileges or request.mode == "clean",
        single_transaction=request.mode == "clean",
        server_major=plan.server_major,
        dump_major=plan.dump_major,
    )
    known = {str(r[0]) for r in conn.execute("SELECT name FROM pg_settings").fetchall()}
    steps = Steps(
        conn,
        plan.target,
        plan.source,
        plan.record,
        plan.tools,
        options,
        known,
        lambda message: report_step(progress, message),
        cancel,
        journal=journal,
        home=settings.home,
        trust=trust,
    )
    steps.report = progress
    return steps


def _outcome(plan: RestorePlan, result: RestoreRecord) -> str:
    dbname = result.dbname
    if plan.request.mode != "recreate":
        return "nothing changed"
    if result.safety_backup_id:
        return f"{dbname} may be empty; restore safety backup {result.safety_backup_id}"
    return f"{dbname} may be empty"


def _failed(
    settings: Settings,
    catalog: Catalog,
    plan: RestorePlan,
    result: RestoreRecord,
    exc: BaseException,
) -> None:
    result.status = "failed"
    result.error = str(exc) or type(exc).__name__
    _close(catalog, result)
    notify.notify(settings, "restore_failed", plan.target.name, restore=result, error=result.error)


def _close(catalog: Catalog, result: RestoreRecord) -> None:
    result.finished_at = runtime.now()
    result.duration_seconds = (result.finished_at - result.started_at).total_seconds()
    catalog.save_restore(result)
