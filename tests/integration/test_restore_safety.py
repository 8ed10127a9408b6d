"""Restores never leave a team with less than it had: damaged backups change nothing, a dry
run changes nothing, clean mode restores in place, and the environment guard holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgvault import backups, databases, restores
from pgvault.backups import BackupRequest
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import load_settings
from pgvault.errors import EXIT_CODES, ArchiveError, NotFound, Refused, RestoreError
from pgvault.restores import RestoreRequest, policy
from support.fingerprint import Fingerprint, assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, Vault, error_line


def _backup(
    vault: Vault,
    cluster: PgCluster,
    db: str,
    dump_format: str | None = None,
    compression: str | None = None,
) -> BackupRecord:
    request = BackupRequest(
        target=vault.target(cluster, db), dump_format=dump_format, compression=compression
    )
    return backups.create(vault.settings, vault.catalog, request)


def _assert_untouched(cluster: PgCluster, live: str, before: Fingerprint) -> None:
    assert_same_database(before, database_fingerprint(cluster, live), names=("before", "after"))
    assert not [db for db in cluster.databases() if "_pgvault_scratch_" in db]
    assert not [db for db in cluster.databases() if db.startswith(f"{live}_pre_restore_")]


@pytest.mark.parametrize(
    ("dump_format", "compression"), [("custom", "zstd"), ("plain", "gzip"), ("directory", "none")]
)
def test_swap_restore_of_a_damaged_backup_changes_nothing(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    janitor: Janitor,
    dump_format: str,
    compression: str,
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    record = _backup(vault, pg18, live, dump_format=dump_format, compression=compression)
    before = database_fingerprint(pg18, live)
    # Bit rot of the same size: 4 KiB of 0xff in the middle of the stored object.
    stored = vault.stored(record)
    data = bytearray(stored.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    stored.write_bytes(bytes(data))

    with pytest.raises(RestoreError, match="nothing changed|failed"):
        restores.restore(
            vault.settings,
            vault.catalog,
            RestoreRequest(target=vault.target(pg18, live), backup_id=record.id, confirm=live),
        )

    _assert_untouched(pg18, live, before)
    [restore] = vault.catalog.list_restores()
    assert restore.status == "failed" and restore.error


def test_restore_of_a_truncated_stored_object_is_refused(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    record = _backup(vault, pg18, live)
    before = database_fingerprint(pg18, live)
    stored = vault.stored(record)
    stored.write_bytes(stored.read_bytes()[: (record.size_bytes or 0) // 2])

    with pytest.raises(NotFound, match="no intact copy.*wrong size"):
        restores.restore(
            vault.settings,
            vault.catalog,
            RestoreRequest(target=vault.target(pg18, live), backup_id=record.id, confirm=live),
        )

    _assert_untouched(pg18, live, before)
    assert [b.trigger for b in vault.catalog.list_backups()] == ["manual"]  # no safety backup


@pytest.mark.parametrize("cut", ["mid-data", "after-data"])
def test_cli_restore_of_a_cut_short_dump_file_changes_nothing(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    janitor: Janitor,
    tmp_path: Path,
    cut: str,
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    record = _backup(vault, pg18, live, dump_format="plain", compression="none")
    dump = vault.stored(record).read_bytes()
    # "after-data" ends cleanly after a statement: every row is there, the constraints
    # and indexes are not; psql alone would load it without an error.
    end = len(dump) // 2 if cut == "mid-data" else dump.index(b"-- Name: actor actor_pkey")
    cut_file = tmp_path / "cut.sql"
    cut_file.write_bytes(dump[:end])
    before = database_fingerprint(pg18, live)

    done = vault.cli(
        "restore", "--file", str(cut_file), "--to", pg18.url(live), "--yes", cluster=pg18
    )

    line = error_line(done)  # refused before anything starts: no progress lines
    assert done.returncode == EXIT_CODES[ArchiveError]
    assert "cut short" in line and "nothing changed" in line
    _assert_untouched(pg18, live, before)
    assert vault.reopen_catalog().list_restores() == []  # no restore even began


def test_dry_run_shows_recorded_and_current_counts_and_changes_nothing(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    record = _backup(vault, pg18, live)
    pg18.psql("INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')", dbname=live)
    before = database_fingerprint(pg18, live)
    vault.close()  # the CLI writes the catalog

    done = vault.cli(
        "restore", record.id, "--to", pg18.url(live), "--yes", "--dry-run", "--json", cluster=pg18
    )
    text = vault.cli(
        "restore", record.id, "--to", pg18.url(live), "--yes", "--dry-run", cluster=pg18
    )

    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["target_exists"] is True
    assert plan["mode"] == "swap" and plan["safety_backup"] is True
    tables = {t["table"]: (t["recorded"], t["current"]) for t in plan["tables"]}
    assert tables["public.actor"] == (200, 201)
    assert tables["public.film"] == (1000, 1000)
    assert set(tables) == set(record.row_counts or {})
    assert plan["objects"]["TABLE DATA"] == len(record.row_counts or {})
    assert text.returncode == 0, text.stderr
    assert "would restore" in text.stderr
    assert any(
        "public.actor" in ln and "200" in ln and "201" in ln for ln in text.stdout.splitlines()
    )
    _assert_untouched(pg18, live, before)
    catalog = vault.reopen_catalog()
    assert catalog.list_restores() == []
    assert [b.id for b in catalog.list_backups()] == [record.id]  # no safety backup taken


def test_clean_mode_restores_in_place(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    # See the next test: pg_restore --clean cannot drop pagila's partitioned payment table.
    pg18.psql("DROP TABLE payment CASCADE", dbname=live)
    original = database_fingerprint(pg18, live)
    record = _backup(vault, pg18, live)
    pg18.psql(
        "INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR');"
        "DELETE FROM rental WHERE rental_id % 7 = 0;"
        "UPDATE film SET title = lower(title) WHERE film_id < 50;"
        "DROP VIEW actor_info;",
        dbname=live,
    )
    oid_before = pg18.psql(f"SELECT oid FROM pg_database WHERE datname = '{live}'")

    result = restores.restore(
        vault.settings,
        vault.catalog,
        RestoreRequest(
            target=vault.target(pg18, live),
            backup_id=record.id,
            mode="clean",
            confirm=live,
            safety_backup=False,
        ),
    )

    assert result.status == "completed" and result.previous_database is None
    # In place: the same database, not a swapped-in copy.
    assert pg18.psql(f"SELECT oid FROM pg_database WHERE datname = '{live}'") == oid_before
    assert_same_database(original, database_fingerprint(pg18, live))


def test_clean_mode_restores_partitioned_tables_in_place(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    original = database_fingerprint(pg18, live)
    record = _backup(vault, pg18, live)
    pg18.psql("INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')", dbname=live)
    changed = database_fingerprint(pg18, live)
    request = RestoreRequest(
        target=vault.target(pg18, live),
        backup_id=record.id,
        mode="clean",
        confirm=live,
        safety_backup=False,
    )

    try:
        restores.restore(vault.settings, vault.catalog, request)
    except RestoreError:
        _assert_untouched(pg18, live, changed)  # one transaction: all or nothing
        raise

    assert_same_database(original, database_fingerprint(pg18, live))


def test_environment_guard_refuses_a_production_database_from_staging(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor, tmp_path: Path
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    record = _backup(vault, pg18, live)
    pg18.psql("INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')", dbname=live)
    before = database_fingerprint(pg18, live)
    config = tmp_path / "pgvault.toml"
    config.write_text(
        f'[databases.app]\nurl = "{pg18.url(live)}"\nenvironment = "production"\n', "utf-8"
    )
    home = vault.settings.home

    for environment in ("staging", None):
        settings = load_settings(config_file=config, home=home, environment=environment)
        target = databases.from_url(settings, pg18.url(live, with_password=True))
        assert target.name == "app" and target.environment == "production"
        with pytest.raises(Refused, match="production"):
            restores.restore(
                settings,
                vault.catalog,
                RestoreRequest(target=target, backup_id=record.id, confirm=live),
            )

    _assert_untouched(pg18, live, before)
    assert vault.catalog.list_restores() == []
    assert len(vault.catalog.list_backups()) == 1  # no safety backup either
    # The guard lets the matching environment through.
    production = load_settings(config_file=config, home=home, environment="production")
    policy.check_environment(production, databases.from_config(production, "app"))
