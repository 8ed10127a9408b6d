"""``verify``: quick (stored bytes + archive) and full (a test restore) pass on a good backup;
one corrupted byte fails the quick one; the outcome is recorded in the catalog."""

from __future__ import annotations

import pytest

from pgvault import backups
from pgvault.backups import BackupRequest
from pgvault.errors import EXIT_CODES, VerifyError
from pgvault.operations import verify
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Vault, error_line


def test_quick_and_full_verify_pass_on_a_good_backup(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault
) -> None:
    db = fresh_pagila()
    record = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=vault.target(pg18, db))
    )
    assert vault.catalog.get_backup(record.id).verify_status is None

    quick = verify.verify(vault.settings, vault.catalog, record.id)
    assert quick.ok and not quick.full
    after_quick = vault.catalog.get_backup(record.id)
    assert after_quick.verify_status == "ok" and after_quick.verified_at is not None

    full = verify.verify(
        vault.settings,
        vault.catalog,
        record.id,
        full=True,
        server_conn=vault.target(pg18, "postgres").conn,
    )

    assert full.ok and full.full
    assert full.row_counts == record.row_counts
    assert full.row_counts is not None and full.row_counts["public.actor"] == 200
    stored = vault.catalog.get_backup(record.id)
    assert stored.verify_status == "ok"
    assert stored.verified_at is not None and after_quick.verified_at is not None
    assert stored.verified_at >= after_quick.verified_at
    assert "rows match" in (stored.verify_detail or "")
    assert not [d for d in pg18.databases() if "_pgvault_verify_" in d]


@pytest.mark.parametrize(
    ("dump_format", "compression"), [(None, None), ("plain", "gzip"), ("custom", "zstd")]
)
def test_quick_verify_fails_after_one_corrupted_byte(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    dump_format: str | None,
    compression: str | None,
) -> None:
    db = fresh_pagila()
    record = backups.create(
        vault.settings,
        vault.catalog,
        BackupRequest(
            target=vault.target(pg18, db), dump_format=dump_format, compression=compression
        ),
    )
    verify.verify(vault.settings, vault.catalog, record.id)
    stored = vault.stored(record)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    with pytest.raises(VerifyError, match=f"backup {record.id} failed verification"):
        verify.verify(vault.settings, vault.catalog, record.id)

    failed = vault.catalog.get_backup(record.id)
    assert failed.verify_status == "failed"
    assert failed.verify_detail
    assert failed.status == "completed"  # the row stays; only its verification failed
    vault.close()
    done = vault.cli("verify", record.id, cluster=pg18)
    line = error_line(done)
    assert done.returncode == EXIT_CODES[VerifyError]
    assert "failed verification" in line
