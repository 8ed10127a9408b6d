"""A backup whose pgvault process is SIGKILLed mid-stream is marked interrupted by the next
pgvault command, and leaves nothing in storage (no object, no ``.partial``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil

from pgvault.storage.local import PARTIAL_SUFFIX
from support.pgcluster import PgCluster
from support.vault import PGVAULT, Janitor, Vault

ROWS = 1_000_000  # ~75 MB of dump text: gzip -9 of it takes seconds


def _gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs (zombies count as gone); return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_backup_killed_mid_stream_is_marked_interrupted_and_leaves_nothing(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    db = janitor.new(pg18)
    pg18.create_database(db)
    pg18.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((-g)::text) AS payload "
        f"FROM generate_series(1, {ROWS}) g",
        dbname=db,
    )
    argv = [str(PGVAULT), "backup", pg18.url(db), "--format", "plain"]
    argv += ["--compression", "gzip", "--level", "9", "--no-globals"]
    proc = subprocess.Popen(
        argv,
        env=vault.cli_env(pg18),
        cwd=vault.home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    helpers: list[int] = []
    try:
        # Wait until the row is 'running' and bytes are flowing into the .partial file.
        deadline = time.monotonic() + 60
        partial = None
        while time.monotonic() < deadline and proc.poll() is None:
            running = vault.catalog.running_backups()
            if running:
                candidate = vault.backups_dir / (running[0].storage_key + PARTIAL_SUFFIX)
                if candidate.is_file() and candidate.stat().st_size > 0:
                    partial = candidate
                    break
            time.sleep(0.05)
        assert partial is not None, f"backup never got going: {proc.poll()} {proc.stderr}"
        helpers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert any(psutil.Process(pid).name() == "pg_dump" for pid in helpers)

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

        # pg_dump runs in its own process group: it must die on the broken pipe by itself.
        assert _gone(helpers, timeout=30) == [], "pg_dump outlived the killed pgvault"
        [record] = vault.catalog.list_backups()
        assert record.status == "running"  # nobody has looked yet
        assert partial.exists()

        listed = vault.cli("list", "--json", cluster=pg18)

        assert listed.returncode == 0, listed.stderr
        [shown] = json.loads(listed.stdout)
        assert shown["id"] == record.id
        assert shown["status"] == "interrupted"
        assert "died" in shown["error"]
        assert vault.catalog.get_backup(record.id).status == "interrupted"
        assert vault.stored_files() == []  # no object, no .partial, no manifest
        # client backends only: autovacuum may be at work on the new table
        query = (
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' "
            "AND backend_type = 'client backend'"
        )
        deadline = time.monotonic() + 10
        while pg18.psql(query) != "0" and time.monotonic() < deadline:
            time.sleep(0.05)  # a backend ends just after its client
        assert pg18.psql(query) == "0"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        for pid in _gone(helpers, timeout=0):
            os.kill(pid, signal.SIGKILL)
