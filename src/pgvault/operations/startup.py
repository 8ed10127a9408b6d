"""What every pgvault process does when it starts, before any work: repair what a dead
process left behind.

* backups left ``running`` by a dead process of this host: ``interrupted``, partial files
  and unfinished uploads removed (:func:`pgvault.backups.recover_interrupted`);
* file snapshots left ``running`` by a dead process of this host: ``interrupted``, their
  unfinished manifest and index writes removed (:func:`pgvault.files.sets.recover_interrupted`);
* restores and verifications whose run died (on any host sharing the catalog): rolled
  forward or back from their journal, scratch databases and temporary roles dropped, rows
  ``interrupted`` (:func:`pgvault.restores.repair.repair_unfinished`);
* work directories of dead processes under ``<home>/tmp`` removed
  (:func:`pgvault.workdirs.sweep`), and their private recovery clusters (under
  ``<home>/restores`` or the system's temporary directory) unless their server still runs
  (:func:`pgvault.physical.private.sweep_recoveries`).

Called by the CLI when it opens the catalog, by the API and the scheduler at start, and by
``pgvault doctor``; each part logs and goes on when it cannot finish (the next start tries
again). The backup and restore machinery is imported only when there is something of
theirs to repair: a command's start stays cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgvault import workdirs
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.catalog.unfinished import unfinished
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError

if TYPE_CHECKING:
    from pgvault.catalog.files import FileSnapshotRecord
    from pgvault.restores.repair import Repaired

log = logging.getLogger(__name__)


@dataclass
class Recovered:
    """What a start repaired."""

    backups: list[BackupRecord] = field(default_factory=list)
    snapshots: list[FileSnapshotRecord] = field(default_factory=list)
    restores: list[Repaired] = field(default_factory=list)
    workdirs: int = 0
    recoveries: int = 0


def recover(settings: Settings, catalog: Catalog) -> Recovered:
    """Repair what dead processes left (see the module doc); never raises for a part that
    cannot be finished now.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    found = Recovered()
    left = unfinished(catalog)
    if left.backups:
        from pgvault.backups import recover_interrupted

        found.backups = recover_interrupted(settings, catalog)
    if left.snapshots:
        from pgvault.files import sets

        found.snapshots = sets.recover_interrupted(settings, catalog)
    if left.restores:
        from pgvault.restores.repair import repair_unfinished

        found.restores = repair_unfinished(settings, catalog)
    try:
        found.workdirs = len(workdirs.sweep(settings.home))
        if workdirs.marked_in(workdirs.scratch_places(settings.home), workdirs.RECOVERY_PREFIX):
            from pgvault.physical.private import sweep_recoveries

            found.recoveries = len(sweep_recoveries(settings))
    except OSError as exc:
        log.warning("work directories under %s not swept: %s", settings.home, exc)
    except PgvaultError as exc:
        log.warning("work directories not swept: %s", exc)
    return found
