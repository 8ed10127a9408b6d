"""An uploaded dump is recorded exactly as a pg_dump backup of its database would be: named
by the database's own template and time zone, on its first storage target, with a duration
and a manifest (one recording path for both)."""

from __future__ import annotations

import json
from pathlib import Path

from pgvault import backups, databases
from pgvault.config.settings import load_settings
from support.pgcluster import FreshPagila, PgCluster, dump_to_file
from support.vault import Vault


def test_upload_is_named_and_recorded_like_a_backup(
    vault: Vault, pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path
) -> None:
    live = fresh_pagila()
    dump = tmp_path / "upload.dump"
    dump_to_file(pg18, live, dump)
    target_dir = tmp_path / "elsewhere"
    settings = load_settings(
        home=vault.home,
        storage_targets={"local2": {"url": str(target_dir)}},
        databases={
            "app": {
                "url": pg18.url(live, with_password=True),
                "storage": ["local2"],
                "name_template": "{app}-{environment}-on-{started:%Y-%m-%d-at-%H-%M}-{tz}{ext}",
                "timezone": "Asia/Kolkata",
                "environment": "staging",
            }
        },
    )
    target = databases.from_config(settings, "app")

    with open(dump, "rb") as upload:
        record = backups.receive_upload(
            settings, vault.catalog, target, upload, limit=1 << 30, filename="upload.dump"
        )

    assert record.status == "completed" and record.trigger == "upload"
    assert record.storage == "local2"
    assert record.storage_key.startswith("app-staging-on-") and record.storage_key.endswith(
        "-IST.dump"
    )
    assert record.duration_seconds is not None and record.runner
    manifest = json.loads((target_dir / record.manifest_key).read_text())
    assert manifest["id"] == record.id and manifest["sha256"] == record.sha256
    assert vault.catalog.get_backup(record.id).status == "completed"
