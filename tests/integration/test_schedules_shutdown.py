"""SIGTERM to ``pgvault scheduler`` during a scheduled backup: the backup finishes within
the grace period, or past it is stopped, its upload aborted, and its row marked
``interrupted`` with nothing half-written in storage."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from support.pgcluster import FreshPagila, PgCluster
from support.vault import PGVAULT, Janitor, Vault

CONFIG = """\
home = "{home}"

[databases.app]
url = "{url}"

[databases.app.schedules.often]
cron = "*/2 * * * * *"
{options}

[scheduler]
prune_cron = ""
shutdown_grace_seconds = {grace}
"""


def _scheduler_with_running_backup(
    vault: Vault, url: str, grace: float, options: str = ""
) -> tuple[subprocess.Popen[bytes], BackupRecord]:
    text = CONFIG.format(home=vault.home, url=url, grace=grace, options=options)
    (vault.home / "pgvault.toml").write_text(text, "utf-8")
    env = vault.cli_env()
    log = open(vault.home / "scheduler.log", "wb")  # noqa: SIM115 - closed by the child's end
    proc = subprocess.Popen(
        [str(PGVAULT), "scheduler"], cwd=vault.home, env=env, stdout=log, stderr=log
    )
    log.close()
    catalog: Catalog = vault.catalog
    deadline = time.monotonic() + 30
    while True:
        running = catalog.running_backups()
        if running:
            return proc, running[0]
        assert proc.poll() is None, (vault.home / "scheduler.log").read_text()
        assert time.monotonic() < deadline, "no scheduled backup started"
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(60)
    return code, time.monotonic() - started


def test_sigterm_lets_a_running_backup_finish_within_the_grace(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault
) -> None:
    url = pg18.url(fresh_pagila(), with_password=True)
    proc, record = _scheduler_with_running_backup(vault, url, grace=30)

    code, took = _stop(proc)

    assert code == 0, (vault.home / "scheduler.log").read_text()
    assert took < 30
    done = vault.catalog.get_backup(record.id)
    assert done.status == "completed"
    assert len(vault.catalog.list_backups()) == 1, "no new run after SIGTERM"
    assert vault.stored(done).is_file()


def test_sigterm_past_the_grace_interrupts_the_backup_and_leaves_nothing(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    db = janitor.new(pg18)
    pg18.create_database(db)
    pg18.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((-g)::text) AS payload "
        "FROM generate_series(1, 400000) g",
        dbname=db,
    )
    options = 'format = "plain"\ncompression = "gzip"\nlevel = 9'
    proc, record = _scheduler_with_running_backup(
        vault, pg18.url(db, with_password=True), grace=0.3, options=options
    )
    time.sleep(0.2)  # bytes flowing

    code, took = _stop(proc)

    assert code == 0, (vault.home / "scheduler.log").read_text()
    assert took < 15
    stopped = vault.catalog.get_backup(record.id)
    assert stopped.status == "interrupted", stopped
    assert stopped.error == "backup cancelled"
    assert vault.stored_files() == []  # no object, no .partial, no manifest
    assert "interrupted by the shutdown" in (vault.home / "scheduler.log").read_text()
    # client backends only: autovacuum may be at work on the new table
    query = (
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' "
        "AND backend_type = 'client backend'"
    )
    deadline = time.monotonic() + 10
    while pg18.psql(query) != "0" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pg18.psql(query) == "0", "pg_dump outlived the scheduler"
