"""Retention bounded by the policy decides exactly as retention over every row.

With ``max_age_days``, ``prune`` reads a database's young completed backups only as far back
as its counting rules (``minimum_redundancy``, ``keep_last``, GFS) need, and counts the rest
as kept (:func:`pgvault.catalog.retention.history`). On a history of 1,300 hourly rows with
gaps, failed, interrupted, pinned, pre-restore and deleted rows, in SQLite and in a
PostgreSQL catalog, each policy below gets the same keep/delete decision for every row as
``every_row=True``, and the rows left out are exactly ones that retention over every row
keeps. Policies whose rules reach past the young rows fall back to reading them all.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import load_settings
from pgvault.operations import prune
from support.pgcluster import PgCluster

NOW = datetime(2026, 11, 21, 12, 30, tzinfo=UTC)
HOURS = 1300
GAP = range(100, 170)  # three days without backups, among the young ones


def _rows() -> Iterator[BackupRecord]:
    for k in range(HOURS):
        if k in GAP:
            continue
        started = NOW - timedelta(hours=k, minutes=k % 7)
        status = (
            "failed"
            if k % 41 == 5
            else "interrupted"
            if k % 97 == 7
            else "deleted"
            if k % 50 == 3
            else "completed"
        )
        yield BackupRecord.model_validate(
            {
                "id": f"{started:%Y%m%d-%H%M%S}-{k:04x}",
                "database": "app",
                "dbname": "app",
                "server": "db:5432",
                "trigger": "pre-restore" if k % 200 == 11 else "scheduled",
                "status": status,
                "format": "custom",
                "storage": "local",
                "storage_key": f"app/{k}.dump",
                "size_bytes": 1000 + k,
                "started_at": started,
                "pinned": k % 150 == 9,
            }
        )


POLICIES = {
    "age and daily": "max_age_days = 30\nkeep_daily = 7\nfailed_max_age_days = 7",
    "weekly in Kathmandu, pinned included": (
        "max_age_days = 30\nkeep_daily = 3\nkeep_weekly = 4\n"
        'timezone = "Asia/Kathmandu"\ninclude_pinned = true'
    ),
    "keep_last beyond the first page": "max_age_days = 20\nkeep_last = 150",
    "monthly past the young rows": "max_age_days = 30\nkeep_monthly = 6",
    "keep_last past the young rows": "max_age_days = 5\nkeep_last = 200\nminimum_redundancy = 5",
}
BOUNDED = {
    "age and daily",
    "weekly in Kathmandu, pinned included",
    "keep_last beyond the first page",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A catalog holding :func:`_rows`: a SQLite file, or a database on the session's PG 18."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    else:
        cluster = request.getfixturevalue("pg18")
        assert isinstance(cluster, PgCluster)
        name = f"catalog_{secrets.token_hex(4)}"
        cluster.create_database(name)
        url = cluster.url(name, with_password=True)
    opened = Catalog.open(url)
    opened.save_backups(_rows())
    yield opened
    opened.engine.dispose()


@pytest.mark.parametrize("name", list(POLICIES))
def test_bounded_retention_decides_as_every_row(
    catalog: Catalog, tmp_path: Path, name: str
) -> None:
    config = tmp_path / "pgvault.toml"
    config.write_text(
        '[databases.app]\nurl = "postgresql://backup@db:5432/app"\n'
        f"[databases.app.retention]\n{POLICIES[name]}\n"
    )
    settings = load_settings(config, home=tmp_path / "home")
    bounded, _, _ = prune.plan(settings, catalog, "app", now=NOW)
    every, _, _ = prune.plan(settings, catalog, "app", now=NOW, every_row=True)

    full = {d.backup_id: d for d in every.decisions}
    assert len(full) == sum(1 for r in _rows() if r.status != "deleted")
    assert any(not d.keep for d in every.decisions)  # the policies do delete something
    for decision in bounded.decisions:
        same = full[decision.backup_id]
        assert (decision.keep, [c.keep for c in decision.copies]) == (
            same.keep,
            [c.keep for c in same.copies],
        ), decision.backup_id
        if not decision.keep:
            assert decision.reasons == same.reasons
    left_out = set(full) - {d.backup_id for d in bounded.decisions}
    assert len(left_out) == bounded.unlisted
    assert all(full[i].keep for i in left_out)
    assert bounded.protected == every.protected
    assert bounded.hold == every.hold
    if name in BOUNDED:
        assert bounded.unlisted > 200, "the young rows were read after all"
    else:
        assert bounded.unlisted == 0
