"""Retention bounded by the policy decides exactly as retention over every row.

With ``max_age_days``, ``prune`` reads a database's young completed backups only as far back
as its counting rules (``minimum_redundancy``, ``keep_last``, GFS) need, and counts the rest
as kept (:func:`pgvault.catalog.retention.history`). On a history of 1,300 hourly rows with
gaps, failed, interrupted, pinned, pre-restore and deleted rows, in SQLite and in a
PostgreSQL catalog, each policy below gets the same keep/delete decision for every row as
``every_row=True``, and the rows left out are exactly ones that retention over every row
keeps. Policies whose rules reach past the young rows fall back to reading them all. A dry
run over five databases, whose bounded reads go together, shows what each database's own
dry run shows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault.catalog import Catalog, locks
from pgvault.catalog import retention as rows
from pgvault.catalog.records import BackupCopy, BackupRecord
from pgvault.config.settings import load_settings
from pgvault.operations import prune
from support.pgcluster import PgCluster

NOW = datetime(2026, 11, 21, 12, 30, tzinfo=UTC)
HOURS = 1300
GAP = range(100, 170)  # three days without backups, among the young ones


def _rows(database: str = "app") -> Iterator[BackupRecord]:
    suffix = "" if database == "app" else f"-{database}"
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
                "id": f"{started:%Y%m%d-%H%M%S}-{k:04x}{suffix}",
                "database": database,
                "dbname": database,
                "server": "db:5432",
                "trigger": "pre-restore" if k % 200 == 11 else "scheduled",
                "status": status,
                "format": "custom",
                "storage": "local",
                "storage_key": f"{database}/{k}.dump",
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


def _open(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """An empty catalog: a SQLite file, or a database on the session's PG 18."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    else:
        cluster = request.getfixturevalue("pg18")
        assert isinstance(cluster, PgCluster)
        name = f"catalog_{secrets.token_hex(4)}"
        cluster.create_database(name)
        url = cluster.url(name, with_password=True)
    return Catalog.open(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A catalog holding :func:`_rows`."""
    opened = _open(request, tmp_path)
    opened.save_backups(_rows())
    yield opened
    opened.engine.dispose()


def _app_settings(tmp_path: Path, policy: str) -> prune.Settings:
    """Settings with one database, ``app``, under the retention ``policy`` (TOML lines)."""
    config = tmp_path / "pgvault.toml"
    config.write_text(
        '[databases.app]\nurl = "postgresql://backup@db:5432/app"\n'
        f"[databases.app.retention]\n{policy}\n"
    )
    return load_settings(config, home=tmp_path / "home")


@pytest.mark.parametrize("name", list(POLICIES))
def test_bounded_retention_decides_as_every_row(
    catalog: Catalog, tmp_path: Path, name: str
) -> None:
    settings = _app_settings(tmp_path, POLICIES[name])
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


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_a_database_with_few_young_rows_is_read_whole(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """When a database's young completed rows would all fit in the first page, the bounded
    read reads it whole (nothing unlisted) and decides as every row does."""
    settings = _app_settings(tmp_path, POLICIES[name])
    paged, _, _ = prune.plan(settings, catalog, "app", now=NOW)
    assert paged.unlisted > 200  # more young rows than the first page: read by pages
    monkeypatch.setattr(rows, "FIRST_PAGE", 10_000)  # now they all fit in it
    whole, _, _ = prune.plan(settings, catalog, "app", now=NOW)
    every, _, _ = prune.plan(settings, catalog, "app", now=NOW, every_row=True)
    assert whole.unlisted == 0
    shown = [(d.backup_id, d.keep, d.reasons, [c.keep for c in d.copies]) for d in whole.decisions]
    assert shown == [
        (d.backup_id, d.keep, d.reasons, [c.keep for c in d.copies]) for d in every.decisions
    ]
    assert (whole.protected, whole.hold) == (every.protected, every.hold)


MANY = {  # two databases share a horizon, one has its own, two read every row
    "app": POLICIES["age and daily"],
    "crm": POLICIES["age and daily"],
    "erp": POLICIES["keep_last beyond the first page"],
    "hr": POLICIES["monthly past the young rows"],
    "ops": "keep_last = 40\nfailed_max_age_days = 7",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def many(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A catalog holding :func:`_rows` of each database of :data:`MANY`, every tenth row
    with a completed copy on a second target."""
    opened = _open(request, tmp_path)
    for name in MANY:
        made = list(_rows(name))
        opened.save_backups(made)
        for record in made[::10]:
            copy = BackupCopy(
                backup_id=record.id,
                storage="offsite",
                storage_key=record.storage_key,
                status="completed",
            )
            opened.save_copy(copy)
    yield opened
    opened.engine.dispose()


def _many_settings(tmp_path: Path) -> prune.Settings:
    config = tmp_path / "pgvault.toml"
    config.write_text(
        "".join(
            f'[databases.{name}]\nurl = "postgresql://backup@db:5432/{name}"\n'
            f"[databases.{name}.retention]\n{policy}\n"
            for name, policy in MANY.items()
        )
    )
    return load_settings(config, home=tmp_path / "home")


def _shown(report: prune.PruneReport) -> list[tuple[object, ...]]:
    return [
        (i.database, i.backup_id, i.keep, i.reasons, i.protected, i.held, i.error, i.copies)
        for i in report.items
    ]


def test_dry_run_over_every_database_decides_as_each_alone(
    many: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run over every database reads them together (in statements of 2 databases
    and IN lists of 3 here, so the chunks meet) and shows what each database's own prune
    shows, which keeps what deciding every row keeps."""
    settings = _many_settings(tmp_path)
    alone = [prune.apply(settings, many, database=n, dry_run=True, now=NOW) for n in MANY]
    every = prune.apply(settings, many, dry_run=True, now=NOW, every_row=True)
    monkeypatch.setattr(rows, "CHUNK", 2)
    monkeypatch.setattr(rows, "IN_LIST", 3)
    together = prune.apply(settings, many, dry_run=True, now=NOW)

    assert _shown(together) == [row for report in alone for row in _shown(report)]
    assert together.unlisted == {k: v for r in alone for k, v in r.unlisted.items()}
    assert set(together.unlisted) == {"app", "crm", "erp"}  # the bounded ones
    kept = {i.backup_id: (i.keep, [c.keep for c in i.copies]) for i in every.items}
    assert all(kept[i.backup_id] == (i.keep, [c.keep for c in i.copies]) for i in together.items)
    assert len(kept) - len(together.items) == sum(together.unlisted.values())
    assert any(len(i.copies) == 2 for i in together.items)  # copies were read with the rows
    assert {i.database for i in together.items if not i.keep} == set(MANY)


def test_dry_run_shows_a_database_whose_prune_runs_elsewhere(many: Catalog, tmp_path: Path) -> None:
    """A real prune skips a database whose prune lock is held elsewhere; a dry run, which
    changes nothing, takes no lock and shows it."""
    settings = _many_settings(tmp_path)
    with locks.exclusive(settings, many, "prune:crm") as got:
        assert got
        shown = prune.apply(settings, many, database="crm", dry_run=True, now=NOW)
        done = prune.apply(settings, many, database="crm", now=NOW)
    assert any(not i.keep for i in shown.items)
    assert done.items == []
