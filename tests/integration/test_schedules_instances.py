"""Two ``pgvault scheduler`` processes sharing one PostgreSQL catalog (and one storage
target, but not a home: no shared lock files) run each scheduled backup exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from pgvault.catalog import Catalog
from support.pgcluster import FreshPagila, PgCluster
from support.vault import PGVAULT, Janitor, clean_env

CONFIG = """\
home = "{home}"
catalog_url = "{catalog}"
default_storage = "{storage}"

[databases.app]
url = "{url}"

[databases.app.schedules.often]
cron = "*/2 * * * * *"

[scheduler]
prune_cron = ""
misfire_grace_seconds = 1
shutdown_grace_seconds = 30
"""


def _start(home: Path, config: str) -> tuple[subprocess.Popen[bytes], Path]:
    home.mkdir(parents=True)
    (home / "pgvault.toml").write_text(config.replace("{home}", str(home)), "utf-8")
    log = home / "scheduler.log"
    env = clean_env()
    env.pop("PGVAULT_CONFIG", None)
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [str(PGVAULT), "-v", "scheduler"], cwd=home, env=env, stdout=sink, stderr=sink
        )
    return proc, log


def test_two_schedulers_on_one_postgresql_catalog_run_each_slot_once(
    pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor, tmp_path: Path
) -> None:
    db = fresh_pagila()
    catalog_db = janitor.new(pg18, "catalog")
    pg18.create_database(catalog_db)
    catalog_url = pg18.url(catalog_db, with_password=True)
    config = (
        CONFIG.replace("{catalog}", catalog_url)
        .replace("{storage}", str(tmp_path / "store"))
        .replace("{url}", pg18.url(db, with_password=True))
    )
    catalog = Catalog.open(catalog_url)  # migrate before both start
    procs = [_start(tmp_path / name, config) for name in ("one", "two")]
    try:
        deadline = time.monotonic() + 30
        while not all(b"scheduler started" in log.read_bytes() for _, log in procs):
            assert time.monotonic() < deadline, [log.read_text() for _, log in procs]
            assert all(p.poll() is None for p, _ in procs), [log.read_text() for _, log in procs]
            time.sleep(0.1)
        both_up = time.time()
        deadline = time.monotonic() + 60
        while True:
            rows = catalog.list_backups(include_deleted=True)
            late = [r for r in rows if r.started_at.timestamp() > both_up + 1]
            if len({r.labels["scheduled_for"] for r in late}) >= 4:
                break
            assert time.monotonic() < deadline, f"only {len(rows)} backups"
            time.sleep(0.2)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        codes = [proc.wait(60) for proc, _ in procs]
    logs = [log.read_text() for _, log in procs]
    assert codes == [0, 0], logs
    rows = catalog.list_backups(include_deleted=True)
    per_slot = Counter(r.labels["scheduled_for"] for r in rows)
    assert per_slot and max(per_slot.values()) == 1, per_slot
    assert {r.status for r in rows} == {"completed"}, [(r.status, r.error) for r in rows]
    assert len(rows) >= 4
    runners = Counter(r.runner for r in rows)
    assert sum(runners.values()) == len(rows)
    assert any("already ran" in log or "skipped" in log for log in logs), logs
    catalog.engine.dispose()
