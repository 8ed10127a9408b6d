"""The catalog through the CLI: rebuild from manifests, ``backup --all``, labels in ``list``
and ``show``, ``download --decompress`` and ``delete``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pgvault import backups
from pgvault.backups import BackupRequest
from pgvault.dumps.layers import CUSTOM_MAGIC, ZSTD_MAGIC
from pgvault.errors import BackupError
from support.pgcluster import FreshPagila, PgCluster, embedded_bindir
from support.vault import Janitor, Vault


def test_catalog_rebuild_brings_back_the_completed_backups(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault
) -> None:
    db = fresh_pagila()
    target = vault.target(pg18, db)
    made = [
        backups.create(vault.settings, vault.catalog, BackupRequest(target=target)),
        backups.create(
            vault.settings,
            vault.catalog,
            BackupRequest(
                target=target, dump_format="plain", compression="gzip", labels={"k": "v"}
            ),
        ),
    ]
    with pytest.raises(BackupError):
        backups.create(vault.settings, vault.catalog, BackupRequest(target=target, timeout=0.001))
    before = {r.id: r.model_dump() for r in vault.catalog.list_backups(status="completed")}
    assert set(before) == {r.id for r in made}
    assert len(vault.catalog.list_backups()) == 3
    vault.close()
    for path in vault.home.glob("catalog.sqlite3*"):  # the database and its WAL files
        path.unlink()

    done = vault.cli("catalog", "rebuild", cluster=pg18)

    assert done.returncode == 0, done.stderr
    assert "catalog rebuilt: 2 backups" in done.stderr
    after = {r.id: r.model_dump() for r in vault.reopen_catalog().list_backups()}
    assert after == before  # the failed backup had no manifest: it is gone for good


def test_backup_all_backs_up_every_database_of_the_server(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    extra = [janitor.new(pg18, "all"), janitor.new(pg18, "all")]
    for n, name in enumerate(extra, start=1):
        pg18.create_database(name)
        pg18.psql(f"CREATE TABLE t AS SELECT generate_series(1, {n * 10}) AS i", dbname=name)
    expected = set(pg18.databases())  # non-template databases: postgres, ours, any others

    done = vault.cli("backup", "--all", pg18.url(), "--json", cluster=pg18)

    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert sorted(r["dbname"] for r in records) == sorted(expected)
    assert all(r["status"] == "completed" for r in records)
    by_db = {r["dbname"]: r for r in records}
    assert by_db[extra[0]]["row_counts"] == {"public.t": 10}
    assert by_db[extra[1]]["row_counts"] == {"public.t": 20}
    catalog = vault.reopen_catalog()
    assert sorted(r.dbname for r in catalog.list_backups()) == sorted(expected)
    for record in catalog.list_backups():
        assert vault.stored(record).is_file()


def test_labels_download_and_delete(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, tmp_path: Path
) -> None:
    db = fresh_pagila()
    stream = {"PGVAULT_COMPRESS_IN": "stream"}  # a zstd layer whatever pg_dump supports
    made = vault.cli(
        "backup", pg18.url(db), "-F", "custom", "--compression", "zstd",
        "--label", "team=data", "--label", "ticket=OPS-42", "--json",
        cluster=pg18, env=stream,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    backup_id = record["id"]
    labels = {"team": "data", "ticket": "OPS-42"}
    assert record["labels"] == labels
    stored = vault.backups_dir / record["storage_key"]
    assert stored.read_bytes().startswith(ZSTD_MAGIC)

    listed = vault.cli("list", "--json", cluster=pg18)
    shown = vault.cli("show", backup_id, "--json", cluster=pg18)
    table = vault.cli("list", cluster=pg18)

    assert [(r["id"], r["labels"]) for r in json.loads(listed.stdout)] == [(backup_id, labels)]
    assert json.loads(shown.stdout)["labels"] == labels
    assert "team=data" in table.stdout

    raw, plain = tmp_path / "raw.dump.zst", tmp_path / "plain.dump"
    got_raw = vault.cli("download", backup_id, "-o", str(raw), cluster=pg18)
    got_plain = vault.cli("download", backup_id, "-o", str(plain), "--decompress", cluster=pg18)

    assert got_raw.returncode == 0 and got_plain.returncode == 0, got_plain.stderr
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == record["sha256"]
    assert plain.read_bytes().startswith(CUSTOM_MAGIC)
    toc = pg18.client(str(embedded_bindir() / "pg_restore"), "--list", str(plain))
    assert "TABLE DATA public actor" in toc
    assert not list(tmp_path.glob("*.partial"))

    refused = vault.cli("delete", backup_id, "--yes", cluster=pg18)
    assert refused.returncode == 11 and "minimum_redundancy 3" in refused.stderr  # its only one
    assert stored.exists()

    deleted = vault.cli("delete", backup_id, "--yes", "--force", cluster=pg18)

    assert deleted.returncode == 0, deleted.stderr
    assert not stored.exists()
    assert not stored.with_name(stored.name + ".manifest.json").exists()
    assert vault.stored_files() == []  # globals too
    assert json.loads(vault.cli("list", "--json", cluster=pg18).stdout) == []
    assert json.loads(vault.cli("show", backup_id, "--json", cluster=pg18).stdout)["status"] == (
        "deleted"
    )
