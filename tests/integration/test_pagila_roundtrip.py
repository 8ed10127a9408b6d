"""Pagila survives backup and restore exactly, in every format and compression.

The fingerprint compares the schema (normalized ``pg_dump --schema-only``), every table's
row count and md5 of its sorted rows, every sequence and the catalog object counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgvault import backups, restores
from pgvault.backups import BackupRequest
from pgvault.dumps.layers import CUSTOM_MAGIC, open_layers, sniff_layer
from pgvault.postgres import tools
from pgvault.restores import RestoreRequest
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, Vault, user_table_counts

COMBOS = [
    (dump_format, compression)
    for dump_format in ("custom", "plain", "directory")
    for compression in ("zstd", "gzip", "none")
]


@pytest.mark.parametrize(("dump_format", "compression"), COMBOS)
def test_round_trip_into_a_new_database(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    janitor: Janitor,
    dump_format: str,
    compression: str,
) -> None:
    src = fresh_pagila()
    record = backups.create(
        vault.settings,
        vault.catalog,
        BackupRequest(
            target=vault.target(pg18, src), dump_format=dump_format, compression=compression
        ),
    )

    assert record.status == "completed"
    assert record.format == dump_format and record.compression == compression
    stored = vault.stored(record).read_bytes()
    assert len(stored) == record.size_bytes
    # The method really is applied, either inside the archive (pg_dump) or to the stream.
    if compression == "none":
        assert record.compressed_by is None
        assert sniff_layer(stored[:1024]) is None
    elif dump_format == "plain" or record.compressed_by == "pgvault":
        assert record.compressed_by == "pgvault"
        assert sniff_layer(stored[:1024]) == compression
    else:
        assert record.compressed_by == "pg_dump"
        assert sniff_layer(stored[:1024]) is None
    if dump_format == "custom" and record.compressed_by != "pgvault":
        assert stored.startswith(CUSTOM_MAGIC)
    assert record.row_counts is not None
    assert record.row_counts["public.actor"] == 200
    assert record.row_counts["public.film_actor"] == 5462

    dst = janitor.new(pg18)
    result = restores.restore(
        vault.settings,
        vault.catalog,
        RestoreRequest(target=vault.target(pg18, dst), backup_id=record.id, confirm=dst),
    )

    assert result.status == "completed"
    assert result.previous_database is None  # nothing lived there before
    assert result.safety_backup_id is None
    assert_same_database(database_fingerprint(pg18, src), database_fingerprint(pg18, dst))


def test_round_trip_of_a_stream_compressed_custom_archive(
    pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path, janitor: Janitor
) -> None:
    """compress_in=stream: a .dump.zst that pg_restore reads through a pipe (no -j)."""
    vault = Vault.open(tmp_path / "stream", compress_in="stream")
    try:
        src = fresh_pagila()
        request = BackupRequest(
            target=vault.target(pg18, src), dump_format="custom", compression="zstd"
        )
        record = backups.create(vault.settings, vault.catalog, request)
        assert record.compressed_by == "pgvault"
        assert record.storage_key.endswith(".dump.zst")
        assert sniff_layer(vault.stored(record).read_bytes()[:8]) == "zstd"

        dst = janitor.new(pg18)
        restores.restore(
            vault.settings,
            vault.catalog,
            RestoreRequest(target=vault.target(pg18, dst), backup_id=record.id, confirm=dst),
        )

        assert_same_database(database_fingerprint(pg18, src), database_fingerprint(pg18, dst))
    finally:
        vault.close()


def test_swap_restore_over_the_live_database_keeps_the_previous_one(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    original = database_fingerprint(pg18, live)
    record = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=vault.target(pg18, live))
    )
    # Life goes on after the backup: the restore must bring the backup's state back.
    pg18.psql(
        "INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR');"
        "UPDATE film SET rental_rate = rental_rate + 1 WHERE film_id <= 10;",
        dbname=live,
    )
    target = vault.target(pg18, live)

    result = restores.restore(
        vault.settings,
        vault.catalog,
        RestoreRequest(target=target, backup_id=record.id, mode="swap", confirm=live),
    )

    assert_same_database(original, database_fingerprint(pg18, live))
    previous = result.previous_database
    assert previous is not None and previous.startswith(f"{live}_pre_restore_")
    assert previous in restores.leftovers(vault.catalog, target.conn)
    assert previous in pg18.databases()
    # The previous database is the live one as it was just before the restore.
    assert user_table_counts(pg18, previous)["public.actor"] == 201
    assert pg18.psql("SELECT count(*) FROM film WHERE rental_rate > 5", dbname=previous) != (
        pg18.psql("SELECT count(*) FROM film WHERE rental_rate > 5", dbname=live)
    )
    # A safety backup of the live database was taken and recorded first.
    assert result.safety_backup_id is not None
    safety = vault.catalog.get_backup(result.safety_backup_id)
    assert safety.trigger == "pre-restore"
    assert safety.status == "completed"
    assert safety.dbname == live
    assert safety.row_counts is not None and safety.row_counts["public.actor"] == 201
    assert vault.stored(safety).is_file()
    assert not [db for db in pg18.databases() if "_pgvault_scratch_" in db]
    restored = vault.catalog.list_restores()
    assert [(r.status, r.safety_backup_id, r.previous_database) for r in restored] == [
        ("completed", safety.id, previous)
    ]


def test_tables_only_backup_holds_only_those_tables(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor
) -> None:
    src = fresh_pagila()
    record = backups.create(
        vault.settings,
        vault.catalog,
        BackupRequest(target=vault.target(pg18, src), tables=["public.actor", "public.film"]),
    )

    assert record.tables == ["public.actor", "public.film"]
    assert record.row_counts == {"public.actor": 200, "public.film": 1000}
    assert record.object_counts is not None and record.object_counts["TABLE DATA"] == 2

    # The archive's TOC, as a dry run shows it against a database that does not exist yet.
    fresh = janitor.new(pg18)
    plan = restores.plan(
        vault.settings,
        vault.catalog,
        RestoreRequest(target=vault.target(pg18, fresh), backup_id=record.id),
    )
    assert plan.preview.objects["TABLE DATA"] == 2
    assert plan.preview.objects["TABLE"] == 2
    assert not plan.preview.target_exists
    assert {(t.table, t.recorded, t.current) for t in plan.preview.tables} == {
        ("public.actor", 200, None),
        ("public.film", 1000, None),
    }

    # pg_dump -t dumps no dependencies (types, functions, the language film refers to):
    # restore into a database that has them, lacks both tables, and holds no other rows
    # than the 6 languages.
    dst = fresh_pagila()
    pg18.psql("DROP TABLE actor, film CASCADE", dbname=dst)
    pg18.psql(
        "SELECT format('TRUNCATE %I.%I CASCADE', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'language' \\gexec",
        dbname=dst,
    )
    before = {t: n for t, n in user_table_counts(pg18, dst).items() if n}
    assert before == {"public.language": 6}
    restores.restore(
        vault.settings,
        vault.catalog,
        RestoreRequest(
            target=vault.target(pg18, dst),
            backup_id=record.id,
            mode="clean",
            confirm=dst,
            safety_backup=False,
        ),
    )

    having_rows = {t: n for t, n in user_table_counts(pg18, dst).items() if n}
    assert having_rows == {**before, "public.actor": 200, "public.film": 1000}
    source = database_fingerprint(pg18, src).tables
    restored = database_fingerprint(pg18, dst).tables
    assert restored["actor"] == source["actor"]
    assert restored["film"] == source["film"]


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
def test_pg18_dump_of_a_pg15_server_restores_into_pg15(
    pg15: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    janitor: Janitor,
    dump_format: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only a newer pg_dump: the same-major pg_dump 15 would be chosen otherwise.
    monkeypatch.setenv("PG_DUMP_BIN", str(tools.choose("pg_dump", 18).path))
    src = fresh_pagila(pg15)
    record = backups.create(
        vault.settings,
        vault.catalog,
        BackupRequest(target=vault.target(pg15, src), dump_format=dump_format),
    )
    # The newer pg_dump was used: its dump carries settings PostgreSQL 15 rejects.
    assert record.server_version is not None and record.server_version.startswith("15.")
    assert record.pg_dump_version is not None and int(record.pg_dump_version.split(".")[0]) >= 17
    if dump_format == "plain":
        with vault.stored(record).open("rb") as raw, open_layers(raw).stream as dump:
            assert b"SET transaction_timeout = 0;" in dump.read()

    dst = janitor.new(pg15)
    result = restores.restore(
        vault.settings,
        vault.catalog,
        RestoreRequest(target=vault.target(pg15, dst), backup_id=record.id, confirm=dst),
    )

    assert result.status == "completed"
    assert_same_database(database_fingerprint(pg15, src), database_fingerprint(pg15, dst))
