"""Writing a restore's journal: each step is recorded in the catalog before it runs.

A run holds the named lock ``journal:<id>`` (:func:`pgvault.catalog.locks.exclusive`: a
PostgreSQL advisory lock with a shared catalog, an flock with SQLite) from its first step to
its end, so :mod:`pgvault.restores.repair` on any host can tell a dead run (the lock is
free) from a live one. The steps of a swap::

    planned -> loading -> proven -> blocking -> live_renamed -> scratch_renamed -> swapped

**Test-only fault injection.** When the environment variable :data:`TEST_ONLY_KILL_AT`
names a step at import time, the process SIGKILLs itself right after writing that step
(before carrying it out), so the crash trials can stop pgvault at every step. Unset (every
normal run) the check is one comparison with ``None``.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pgvault import runtime
from pgvault.catalog import Catalog, locks
from pgvault.catalog import journal as rows
from pgvault.catalog.journal import JournalEntry, JournalKind
from pgvault.config.settings import Settings
from pgvault.errors import Busy, PgvaultError
from pgvault.postgres.conninfo import ConnInfo

log = logging.getLogger(__name__)

SWAP_STEPS = (
    "planned",
    "loading",
    "proven",
    "blocking",
    "live_renamed",
    "scratch_renamed",
    "swapped",
)
"""The journaled steps of a swap restore, in order."""

TEST_ONLY_KILL_AT = "PGVAULT_TEST_ONLY_KILL_AT"
"""Test builds only: the step at which the process SIGKILLs itself (see the module doc)."""
_KILL_AT = os.environ.get(TEST_ONLY_KILL_AT) or None


def _test_only_kill_point(step: str) -> None:
    """Test-only fault injection: SIGKILL this process at ``step`` when asked (inert when
    :data:`TEST_ONLY_KILL_AT` was unset at import)."""
    if _KILL_AT is not None and _KILL_AT == step:
        os.kill(os.getpid(), signal.SIGKILL)


def application_name(entry_id: str) -> str:
    """The ``application_name`` of every session of a journaled run."""
    return f"pgvault-{entry_id}"


def session_tag(conn: ConnInfo, entry_id: str) -> ConnInfo:
    """``conn`` with the run's ``application_name`` (libpq passes it to its children too:
    pg_dump, pg_restore and psql get it in their connection string)."""
    return conn.with_params(application_name=application_name(entry_id))


def lock_name(entry_id: str) -> str:
    """The lock a journaled run holds until it ends."""
    return f"journal:{entry_id}"


class Journal:
    """The journal row of one run; :meth:`step` records the next step before it runs."""

    def __init__(self, catalog: Catalog, entry: JournalEntry) -> None:
        self.catalog = catalog
        self.entry = entry

    def step(self, name: str, **values: Any) -> None:
        """Record that ``name`` is about to run (with any names it will use)."""
        now = runtime.now()
        rows.update_entry(self.catalog, self.entry.id, step=name, updated_at=now, **values)
        self.entry = self.entry.model_copy(update={"step": name, "updated_at": now, **values})
        _test_only_kill_point(name)

    def note(self, **values: Any) -> None:
        """Record names the current step uses (a temporary role), without a new step."""
        now = runtime.now()
        rows.update_entry(self.catalog, self.entry.id, updated_at=now, **values)
        self.entry = self.entry.model_copy(update={"updated_at": now, **values})

    def close(self, outcome: str) -> None:
        """Close the row: the run ended (``outcome`` in words)."""
        now = runtime.now()
        rows.update_entry(
            self.catalog, self.entry.id, finished_at=now, updated_at=now, outcome=outcome[:2000]
        )
        self.entry = self.entry.model_copy(update={"finished_at": now, "outcome": outcome})


@contextmanager
def journaled(
    settings: Settings,
    catalog: Catalog,
    entry_id: str,
    kind: JournalKind,
    conn: ConnInfo,
    *,
    dbname: str | None,
    settle: Callable[[JournalEntry], str] | None = None,
) -> Iterator[Journal]:
    """Hold the run's lock and its journal row (step ``started``) for the block; the row is
    closed when the block ends: ``completed``, or after a failure once ``settle`` (the
    repair of :mod:`pgvault.restores.repair`) has put the databases right. When ``settle``
    fails too, the row stays open for the next start to repair.

    Raises:
        Busy: the lock is taken (an id used twice).
    """
    with locks.exclusive(settings, catalog, lock_name(entry_id)) as got:
        if not got:
            raise Busy(f"journal {entry_id} is held by another run")
        now = runtime.now()
        entry = JournalEntry(
            id=entry_id,
            kind=kind,
            step="started",
            server=conn.with_dbname("postgres").display().rsplit("/", 1)[0],
            conn_params={
                k: v for k, v in conn.params.items() if k not in ("password", "application_name")
            },
            dbname=dbname,
            runner=runtime.runner_id(),
            started_at=now,
            updated_at=now,
        )
        rows.add_entry(catalog, entry)
        journal = Journal(catalog, entry)
        try:
            yield journal
        except BaseException as exc:
            failure = f"failed: {exc}" if str(exc) else f"failed: {type(exc).__name__}"
            if journal.entry.step == "started":  # nothing was done on the server yet
                journal.close(failure)
                raise
            try:
                settled = settle(journal.entry) if settle is not None else ""
            except PgvaultError as undo:
                log.error(
                    "restore %s left unfinished, repaired at the next start: %s", entry_id, undo
                )
            else:
                journal.close(f"{failure}; {settled}" if settled else failure)
            raise
        journal.close("completed")
