"""The command line a newcomer meets: version, help order, an empty catalog, backups named by
'latest' or their file name, schedules in their own time zone, doctor --json, and the one
restore policy (passkey, recent backup) applying to CLI restores too."""

from __future__ import annotations

import json
from pathlib import Path

from pgvault import __version__, passwords
from pgvault.errors import EXIT_CODES, Refused
from support.fingerprint import database_fingerprint as fingerprint
from support.pgcluster import FreshPagila, PgCluster, dump_to_file
from support.vault import Janitor, Vault, error_line

PASSKEY = "restore me 123"


def _write_config(vault: Vault, text: str) -> Path:
    config = vault.home / "pgvault.toml"
    config.write_text(text)
    return config


def test_version_help_order_and_verbose_counter(vault: Vault) -> None:
    version = vault.cli("--version")
    helped = vault.cli("--help")
    counted = vault.cli("-v", "2", "list")

    assert version.returncode == 0 and version.stdout.strip() == f"pgvault {__version__}"
    listing = helped.stdout.split("Commands:")[1]
    names = [
        line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line[2] != " "
    ]
    assert names[:8] == [
        "demo",
        "backup",
        "restore",
        "list",
        "show",
        "verify",
        "download",
        "delete",
    ]
    assert names.index("serve") > names.index("doctor")
    assert "..." not in listing  # summaries are whole sentences, not cut
    assert counted.returncode == 2  # -v is a counter: '2' is read as a command


def test_empty_catalog_says_how_to_make_the_first_backup(vault: Vault) -> None:
    done = vault.cli("list")

    assert done.returncode == 0
    assert "no backups yet" in done.stderr and "pgvault backup" in done.stderr


def test_schedules_show_next_runs_in_their_own_time_zone(vault: Vault) -> None:
    _write_config(
        vault,
        "[databases.app]\n"
        'url = "postgresql://u@localhost/app"\n'
        "[databases.app.schedules.nightly]\n"
        'cron = "0 2 * * *"\n'
        'timezone = "Asia/Kolkata"\n',
    )
    done = vault.cli("schedules")

    assert done.returncode == 0, done.stderr
    assert "02:00 IST (20:30Z)" in done.stdout


def test_doctor_json(vault: Vault, pg18: PgCluster) -> None:
    done = vault.cli("doctor", "--json", cluster=pg18)

    checks = json.loads(done.stdout)
    assert {"name", "ok", "detail"} <= set(checks[0])
    assert any(c["name"] == "catalog" and c["ok"] for c in checks)
    assert done.returncode == (0 if all(c["ok"] for c in checks) else 1)


def test_cli_restore_follows_the_passkey_policy_and_finds_backups_by_name(
    vault: Vault, pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    expected = fingerprint(pg18, live)
    _write_config(
        vault,
        "[databases.app]\n"
        f'url = "{pg18.url(live)}"\n'
        f'restore_passkey_hash = "{passwords.hash_secret(PASSKEY)}"\n',
    )
    made = vault.cli("backup", "--database", "app", "--json", cluster=pg18)
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    pg18.psql("DELETE FROM payment", dbname=live)
    damaged = fingerprint(pg18, live)

    refused = vault.cli("restore", "latest", "--database", "app", "--yes", cluster=pg18)
    wrong = vault.cli(
        "restore",
        "latest",
        "--database",
        "app",
        "--yes",
        cluster=pg18,
        env={"PGVAULT_RESTORE_PASSKEY": "guess guess"},
    )

    for done in (refused, wrong):
        assert done.returncode == EXIT_CODES[Refused], done.stderr
        assert "Invalid restore passkey" in error_line(done)
    assert fingerprint(pg18, live) == damaged  # nothing touched
    listed = json.loads(vault.cli("list", "--json", cluster=pg18).stdout)
    assert [b["trigger"] for b in listed] == ["manual"]  # no safety backup was taken

    file_name = record["storage_key"].rsplit("/", 1)[-1]
    done = vault.cli(
        "restore",
        file_name,
        "--database",
        "app",
        "--yes",
        cluster=pg18,
        env={"PGVAULT_RESTORE_PASSKEY": PASSKEY},
    )
    assert done.returncode == 0, done.stderr
    assert fingerprint(pg18, live) == expected


def test_cli_restore_follows_the_recent_backup_rule(
    vault: Vault, pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor, tmp_path: Path
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    dump = tmp_path / "app.dump"
    dump_to_file(pg18, live, dump)
    _write_config(
        vault,
        f'[databases.app]\nurl = "{pg18.url(live)}"\nrequire_recent_backup_minutes = 60\n',
    )
    args = ("restore", "--file", str(dump), "--database", "app", "--yes", "--as-superuser")

    refused = vault.cli(*args, "--no-safety-backup", cluster=pg18)
    allowed = vault.cli(*args, cluster=pg18)  # its safety backup is the recent backup

    assert refused.returncode == EXIT_CODES[Refused]
    assert "no completed backup of 'app' in the last 60 minutes" in error_line(refused)
    assert allowed.returncode == 0, allowed.stderr
