"""Restores re-check the stored bytes against the catalog's sha256 before going live."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgvault import backups, restores
from pgvault.errors import RestoreError
from support.fingerprint import database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Vault


@pytest.mark.parametrize("mode", ["swap", "clean"])
def test_same_size_bit_rot_is_caught_before_going_live(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, mode: str
) -> None:
    """An uncompressed archive with flipped bytes in a COPY row still parses and loads; the
    sha256 recorded at backup time is what stops it."""
    live = fresh_pagila()
    vault = Vault.open(tmp_path / "home")
    record = backups.create(
        vault.settings,
        vault.catalog,
        backups.BackupRequest(
            target=vault.target(pg18, live), dump_format="custom", compression="none"
        ),
    )
    path = vault.stored(record)
    data = bytearray(path.read_bytes())
    spot = data.find(b"PENELOPE")  # an actor's first name inside the data of table actor
    assert spot > 0
    data[spot : spot + 8] = b"PENELOPX"
    path.write_bytes(bytes(data))
    before = database_fingerprint(pg18, live)
    databases_before = set(pg18.databases())

    with pytest.raises(RestoreError, match="corrupt"):
        restores.restore(
            vault.settings,
            vault.catalog,
            restores.RestoreRequest(
                target=vault.target(pg18, live),
                backup_id=record.id,
                mode=mode,  # type: ignore[arg-type]
                confirm=live,
                safety_backup=False,
            ),
        )
    assert database_fingerprint(pg18, live) == before
    assert set(pg18.databases()) == databases_before
