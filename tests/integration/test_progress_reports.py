"""Progress reports of real backups, restores and downloads (PostgreSQL 18, Pagila)."""

from __future__ import annotations

import re
from pathlib import Path

from pgvault import backups, restores
from pgvault.backups import BackupRequest
from pgvault.progress import ProgressEvent
from pgvault.restores import RestoreRequest
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, Vault


def test_backup_restore_and_download_report_numbers(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor, tmp_path: Path
) -> None:
    src = fresh_pagila()
    target = vault.target(pg18, src)
    first = backups.create(vault.settings, vault.catalog, BackupRequest(target=target))
    seen: list[ProgressEvent] = []

    second = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=target), progress=seen.append
    )

    dumping = [e for e in seen if e.phase == "dumping"]
    assert dumping and all(e.total == max(first.size_bytes or 0, e.done) for e in dumping)
    assert dumping[-1].done == second.size_bytes
    assert [e.done for e in dumping] == sorted(e.done for e in dumping)
    assert any(e.unit == "steps" and "counting rows" in (e.detail or "") for e in seen)

    seen.clear()
    dst = janitor.new(pg18, "prog")
    restores.restore(
        vault.settings,
        vault.catalog,
        RestoreRequest(target=vault.target(pg18, dst), backup_id=second.id, confirm=dst),
        progress=seen.append,
    )
    steps = [e.detail for e in seen if e.unit == "steps"]
    assert any("loading" in (s or "") for s in steps)
    assert any("swapping" in (s or "") for s in steps)
    loading = [e for e in seen if e.phase == "loading"]
    total = sum((second.object_counts or {}).values())
    assert loading and {(e.total, e.unit) for e in loading} == {(total, "entries")}
    assert loading[-1].done > total // 2  # pg_restore --verbose reported most entries

    seen.clear()
    backups.download(
        vault.settings, vault.catalog, second, tmp_path / "copy.dump", progress=seen.append
    )
    assert seen[-1] == ProgressEvent("downloading", second.size_bytes or 0, second.size_bytes)


def test_the_cli_prints_one_line_per_phase_when_not_a_terminal(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault
) -> None:
    src = fresh_pagila()
    done = vault.cli("backup", pg18.url(src), cluster=pg18)

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "dumping ..." in lines
    summary = re.compile(r"^dumping: [\d.]+ (B|KiB|MiB|GiB) in [\d.]+ s \([\d.]+ \w+/s\)$")
    assert any(summary.match(line) for line in lines), lines
    assert "\x1b[" not in done.stderr  # no bar drawing outside a terminal
