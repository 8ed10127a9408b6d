"""Notifications delivered for real, through apprise, to a local HTTP webhook receiver and a
local SMTP server (aiosmtpd): a scheduled backup of an unreachable database, a succeeding
one (success is opt-in), and a target that is down, which never fails the backup."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgvault import backups, databases, notify, restores
from pgvault.operations import monitoring, schedules
from pgvault.operations.scheduler import Scheduler
from support.pgcluster import FreshPagila, PgCluster
from support.receivers import Mailbox, Webhook, free_port, smtp_server, text_of, webhook
from support.vault import Vault

PUBLIC = "https://vault.example.com"


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook() as receiver:
        yield receiver


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


def _vault(tmp_path: Path, url: str, urls: list[str], **notifications: Any) -> Vault:
    return Vault.open(
        tmp_path / "home",
        databases={
            "app": {
                "url": url,
                "environment": "staging",
                "schedules": {"nightly": {"cron": "0 2 * * *"}},
            }
        },
        notifications={"urls": urls, "public_url": PUBLIC, **notifications},
        scheduler={"prune_cron": None},
    )


def _run_nightly(vault: Vault) -> Any:
    [nightly] = [s for s in schedules.configured(vault.settings) if s.name == "nightly"]
    return Scheduler(vault.settings, vault.catalog).run_backup(nightly)


def test_failed_backup_is_notified_by_webhook_and_email(
    tmp_path: Path, hook: Webhook, mailbox: Mailbox
) -> None:
    closed = free_port()
    url = f"postgresql://app:secret@127.0.0.1:{closed}/shop"
    vault = _vault(tmp_path, url, [hook.apprise_url("pgvault"), mailbox.apprise_url()])

    assert _run_nightly(vault) is None

    [failed] = vault.catalog.list_backups()
    assert (failed.status, failed.trigger, failed.labels["schedule"]) == (
        "failed",
        "scheduled",
        "nightly",
    )
    [posted] = hook.wait(1)
    assert posted["path"] == "/pgvault"
    assert posted["type"] == "failure"
    assert posted["title"] == "pgvault: backup of app failed [staging]"
    lines = posted["message"].splitlines()
    assert "database: app" in lines and "environment: staging" in lines
    [error] = [line for line in lines if line.startswith("error: ")]
    assert str(closed) in error and "secret" not in posted["message"]
    assert f"link: {PUBLIC}/backups/{failed.id}" in lines
    [mail] = mailbox.wait(1)
    assert mail["Subject"] == "pgvault: backup of app failed [staging]"
    assert mail["To"] == "ops@example.com"
    body = text_of(mail)
    assert "database: app" in body and error in body
    health = monitoring.health(vault.settings, vault.catalog)
    assert health.databases[0].status == "critical"
    vault.close()


def test_succeeded_backup_is_notified_only_when_opted_in(
    pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path, hook: Webhook
) -> None:
    url = pg18.url(fresh_pagila(), with_password=True)
    vault = _vault(
        tmp_path,
        url,
        [hook.apprise_url()],
        events=["backup_failed", "backup_succeeded"],
    )

    record = _run_nightly(vault)

    assert record is not None and record.status == "completed"
    [posted] = hook.wait(1)
    assert posted["type"] == "success"
    assert posted["title"] == "pgvault: backup of app completed [staging]"
    lines = posted["message"].splitlines()
    assert f"backup: {record.id}" in lines
    assert any(line.startswith("size: ") and line.endswith(("KiB", "MiB")) for line in lines)
    assert f"duration: {record.duration_seconds:.1f} s" in lines
    assert f"link: {PUBLIC}/backups/{record.id}" in lines
    assert not any(line.startswith("error:") for line in lines)

    default = _vault(tmp_path / "default", url, [hook.apprise_url()])
    assert _run_nightly(default) is not None
    assert len(hook.received) == 1, "success is not sent by default"
    vault.close()
    default.close()


def test_unreachable_or_bad_target_never_fails_the_backup(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    tmp_path: Path,
    hook: Webhook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = pg18.url(fresh_pagila(), with_password=True)
    down = f"json://127.0.0.1:{free_port()}/nobody?cto=1&rto=1"
    vault = _vault(
        tmp_path,
        url,
        [down, "nonsense://whatever", hook.apprise_url()],
        events=["backup_succeeded"],
    )

    with caplog.at_level(logging.WARNING, logger="pgvault.notify"):
        record = _run_nightly(vault)

    assert record is not None and record.status == "completed"
    assert len(hook.wait(1)) == 1, "the healthy target still got it"
    warnings = [r.getMessage() for r in caplog.records if r.name == "pgvault.notify"]
    assert any("not a valid apprise URL" in w for w in warnings), warnings
    assert any("not delivered" in w for w in warnings), warnings
    assert not any("nonsense://" in w or str(url) in w for w in warnings)
    assert notify.notify(vault.settings, "backup_succeeded", "app", backup=record) is False
    vault.close()


def test_restore_started_and_finished_are_notified(
    pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path, hook: Webhook
) -> None:
    source = fresh_pagila()
    vault = _vault(tmp_path, pg18.url(source, with_password=True), [hook.apprise_url()])
    app = databases.from_config(vault.settings, "app")
    record = backups.create(vault.settings, vault.catalog, backups.BackupRequest(target=app))
    target = f"{source}_copy"
    restores.restore(
        vault.settings,
        vault.catalog,
        restores.RestoreRequest(
            target=vault.target(pg18, target), backup_id=record.id, confirm=target
        ),
    )
    started, finished = hook.wait(2)
    assert "restore" in started["title"] and "restore" in finished["title"]
    assert (started["type"], finished["type"]) == ("info", "success")
    pg18.drop_database(target)
    vault.close()
