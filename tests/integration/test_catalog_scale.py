"""The catalog at scale, small: 1,000 synthetic backups over 10 databases, in SQLite and in a
PostgreSQL catalog. Pages (offset and cursor) hold exactly the rows a plain sort of the
records gives; a cursor walk stays exact while backups are added; the aggregate queries
(per-day totals, stats, counts, each database's newest rows) equal the same sums done in
Python over the records; the migration to revision 0005 fills the per-day totals of rows
already there. Behaviour only: the timings are in ``bench/bench_catalog.py``.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pgvault.catalog import MIGRATIONS, Catalog, newest
from pgvault.catalog import days as catalog_days
from pgvault.catalog.records import BackupRecord
from pgvault.catalog.stats import DayCounts
from pgvault.catalog.tables import backup_days
from pgvault.errors import ConfigError
from pgvault.operations import monitoring
from support.apiserver import ApiServer
from support.catalog_rows import synthetic_record, synthetic_records
from support.pgcluster import PgCluster

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ROWS, DATABASES = 1000, 10


def _newest_first(records: list[BackupRecord]) -> list[BackupRecord]:
    return sorted(records, key=lambda r: (r.started_at, r.id), reverse=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty catalog's URL: a SQLite file, or a new database on the session's PG 18."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        return
    cluster = request.getfixturevalue("pg18")
    assert isinstance(cluster, PgCluster)
    name = f"catalog_{secrets.token_hex(4)}"
    cluster.create_database(name)
    yield cluster.url(name, with_password=True)
    cluster.drop_database(name)


@pytest.fixture
def filled(catalog_url: str) -> Iterator[tuple[Catalog, list[BackupRecord]]]:
    """The catalog with the 1,000 synthetic rows, written through ``save_backups``."""
    catalog = Catalog.open(catalog_url)
    records = list(synthetic_records(ROWS, DATABASES, NOW))
    assert catalog.save_backups(records) == ROWS
    yield catalog, records
    catalog.engine.dispose()


def _walk(page: Callable[[str | None], tuple[list[BackupRecord], str | None]]) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        items, cursor = page(cursor)
        ids += [r.id for r in items]
        if cursor is None:
            return ids


def test_pages_by_offset_and_cursor_hold_the_sorted_rows(
    filled: tuple[Catalog, list[BackupRecord]],
) -> None:
    catalog, records = filled
    live = [r.id for r in _newest_first([r for r in records if r.status != "deleted"])]
    assert 0 < len(live) < ROWS and len({r.started_at for r in records}) < ROWS  # ties

    def page(cursor: str | None) -> tuple[list[BackupRecord], str | None]:
        found = catalog.page_backups(limit=37, cursor=cursor)
        return found.items, found.next_cursor

    assert _walk(page) == live
    for offset in (0, 37, 500, len(live) - 5):
        assert [r.id for r in catalog.page_backups(limit=37, offset=offset).items] == live[
            offset : offset + 37
        ]
    last = catalog.page_backups(limit=37, offset=len(live) - 37)
    assert last.next_cursor is None and len(last.items) == 37
    assert catalog.page_backups(limit=37, offset=len(live)).items == []


@pytest.mark.parametrize(
    "filters",
    [
        {"database": "db003"},
        {"status": "failed"},
        {"status": "deleted"},
        {"environment": "staging"},
        {"trigger": "manual"},
        {"database": "db007", "status": "completed", "trigger": "scheduled"},
    ],
)
def test_filtered_pages_hold_the_filtered_rows(
    filled: tuple[Catalog, list[BackupRecord]], filters: dict[str, str]
) -> None:
    catalog, records = filled
    since, until = NOW - timedelta(days=3), NOW - timedelta(days=1)

    def keep(r: BackupRecord) -> bool:
        wanted = all(getattr(r, k) == v for k, v in filters.items())
        return wanted and ("status" in filters or r.status != "deleted")

    expected = [r.id for r in _newest_first([r for r in records if keep(r)])]
    assert expected

    def page(cursor: str | None) -> tuple[list[BackupRecord], str | None]:
        found = catalog.page_backups(limit=20, cursor=cursor, **filters)
        return found.items, found.next_cursor

    assert _walk(page) == expected
    window = [
        r.id
        for r in _newest_first([r for r in records if keep(r) and since <= r.started_at < until])
    ]
    found = catalog.page_backups(limit=1000, since=since, until=until, **filters)
    assert [r.id for r in found.items] == window
    if "status" not in filters and "trigger" not in filters:
        listed = catalog.list_backups(limit=15, **filters)
        assert [r.id for r in listed] == expected[:15]


def test_cursor_walk_is_exact_while_backups_are_added(
    filled: tuple[Catalog, list[BackupRecord]],
) -> None:
    catalog, records = filled
    before = [r.id for r in _newest_first([r for r in records if r.status != "deleted"])]
    newer = [synthetic_record(d, -k, 100, NOW) for d in range(3) for k in range(1, 4)]
    seen: list[str] = []
    added_behind: list[str] = []
    added_ahead: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = catalog.page_backups(limit=50, cursor=cursor)
        seen += [r.id for r in page.items]
        cursor, pages = page.next_cursor, pages + 1
        if cursor is None:
            break
        if pages <= len(newer):  # a new backup arrives before every early page
            catalog.add_backup(newer[pages - 1])
        if pages == 3:  # and two older ones appear (a rebuild, an upload): one behind the
            # cursor (already passed: not shown), one ahead of it (shown once, in order)
            last = page.items[-1]
            behind = last.model_copy(
                update={"id": last.id + "-b", "started_at": last.started_at + timedelta(seconds=1)}
            )
            ahead = last.model_copy(
                update={"id": last.id + "-a", "started_at": last.started_at - timedelta(seconds=1)}
            )
            catalog.add_backup(behind)
            catalog.add_backup(ahead)
            added_behind.append(behind.id)
            added_ahead.append(ahead.id)

    assert len(seen) == len(set(seen)), "a row was shown twice"
    assert seen == [i for i in seen if i in set(before) | set(added_ahead)]
    assert [i for i in seen if i in set(before)] == before  # every row, once, in order
    assert added_ahead[0] in seen and added_behind[0] not in seen
    assert not set(seen) & {r.id for r in newer}  # newer than the first page: not shown
    rows = {r.id: r for r in catalog.list_backups(limit=len(seen) + 20)}
    keys = [(rows[i].started_at, i) for i in seen]
    assert keys == sorted(keys, reverse=True)


def test_offset_pages_shift_under_inserts_where_the_cursor_does_not(
    filled: tuple[Catalog, list[BackupRecord]],
) -> None:
    catalog, _ = filled
    first = catalog.page_backups(limit=50)
    second = [r.id for r in catalog.page_backups(limit=50, offset=50).items]
    catalog.add_backup(synthetic_record(0, -1, 100, NOW))  # one new backup
    by_offset = catalog.page_backups(limit=50, offset=50)
    by_cursor = catalog.page_backups(limit=50, cursor=first.next_cursor)
    assert by_offset.items[0].id == first.items[-1].id  # shown again: the page shifted
    assert not {r.id for r in by_cursor.items} & {r.id for r in first.items}
    assert [r.id for r in by_cursor.items] == second


def test_a_cursor_from_elsewhere_is_refused(filled: tuple[Catalog, list[BackupRecord]]) -> None:
    catalog, _ = filled
    for bad in ("nope", "e30", "WyJ4IiwgMV0"):  # junk, {}, ["x", 1]
        with pytest.raises(ConfigError, match="cursor is not one pgvault gave out"):
            catalog.page_backups(cursor=bad)


def _day_totals(records: list[BackupRecord], since: datetime) -> list[tuple[object, ...]]:
    groups: dict[tuple[object, str], Counter[str]] = {}
    sizes: Counter[tuple[object, str]] = Counter()
    pruned: Counter[tuple[object, str]] = Counter()
    for r in records:
        if r.started_at >= since:
            key = (r.started_at.astimezone(UTC).date(), r.database)
            groups.setdefault(key, Counter())[r.status] += 1
            sizes[key] += (r.size_bytes or 0) if r.status == "completed" else 0
            by_retention = r.status == "deleted" and r.labels.get("deleted_by") == "retention"
            pruned[key] += by_retention
    statuses = ("completed", "failed", "interrupted", "running", "deleted")
    return sorted(
        ((*key, *(c[s] for s in statuses), sizes[key], pruned[key]) for key, c in groups.items()),
        reverse=True,
    )


def _as_tuples(found: list[DayCounts]) -> list[tuple[object, ...]]:
    return [
        (
            d.day,
            d.database,
            d.completed,
            d.failed,
            d.interrupted,
            d.running,
            d.deleted,
            d.total_bytes,
            d.pruned,
        )
        for d in found
    ]


def test_aggregates_equal_the_sums_over_the_records(
    filled: tuple[Catalog, list[BackupRecord]],
) -> None:
    catalog, records = filled
    for since in (NOW - timedelta(days=2, hours=5, minutes=3), NOW - timedelta(days=30)):
        assert _as_tuples(catalog.day_counts(since)) == _day_totals(records, since)
    midnight = datetime(2026, 11, 19, tzinfo=UTC)
    mine = [r for r in records if r.database == "db004"]
    assert _as_tuples(catalog.day_counts(midnight, "db004")) == _day_totals(mine, midnight)

    completed = [r for r in records if r.status == "completed"]
    assert [
        (s["database"], s["count"], s["total_bytes"], s["oldest"], s["newest"])
        for s in catalog.stats()
    ] == [
        (
            name,
            len(rows),
            sum(r.size_bytes or 0 for r in rows),
            min(r.started_at for r in rows),
            max(r.started_at for r in rows),
        )
        for name in sorted({r.database for r in completed})
        for rows in [[r for r in completed if r.database == name]]
    ]
    assert sorted(catalog.backup_counts()) == sorted(
        (db, status, n)
        for (db, status), n in Counter((r.database, r.status) for r in records).items()
    )
    assert catalog.backup_databases() == {r.database for r in records}
    retention = Counter(r.database for r in records if r.labels.get("deleted_by") == "retention")
    assert catalog.pruned_counts() == sorted(retention.items())


def _slim(record: BackupRecord | None) -> dict[str, object] | None:
    return None if record is None else record.model_dump(exclude=set(newest.SLIM_OMITS))


def test_newest_rows_of_each_database(filled: tuple[Catalog, list[BackupRecord]]) -> None:
    catalog, records = filled
    subset = synthetic_record(2, -1, 100, NOW).model_copy(update={"tables": ["public.t"]})
    catalog.add_backup(subset)  # db002's newest completed now has no comparable one before
    records.append(subset)
    found = catalog.newest_rows(monitoring.COMPARABLE)
    for name in {r.database for r in records}:
        mine = _newest_first([r for r in records if r.database == name])
        ended = [r for r in mine if r.status in ("completed", "failed", "interrupted")]
        done = [r for r in mine if r.status == "completed"]
        alike = [
            r
            for r in done[1:]
            if all(getattr(r, f) == getattr(done[0], f) for f in monitoring.COMPARABLE)
        ]
        assert _slim(found[name].last_run) == _slim(ended[0])
        assert found[name].completed == done[0]
        assert _slim(found[name].previous) == (_slim(alike[0]) if alike else None)
    assert found["db002"].completed == subset and found["db002"].previous is None


def test_per_day_totals_follow_every_write(filled: tuple[Catalog, list[BackupRecord]]) -> None:
    catalog, records = filled
    since = NOW - timedelta(days=30)
    changed = []
    for record in records[::97]:  # updates one by one and in a batch, a day moved too
        changed.append(record.model_copy(update={"status": "deleted"}))
    catalog.save_backup(
        changed[0].model_copy(update={"started_at": changed[0].started_at - timedelta(days=2)})
    )
    catalog.save_backups(changed[1:])
    by_id = {r.id: r for r in records}
    by_id[changed[0].id] = catalog.get_backup(changed[0].id)
    by_id.update({c.id: c for c in changed[1:]})
    assert _as_tuples(catalog.day_counts(since)) == _day_totals(list(by_id.values()), since)
    with catalog.engine.begin() as conn:
        kept = sorted(tuple(r) for r in conn.execute(sa.select(backup_days)).all())
        catalog_days.refresh_all(conn)
        assert sorted(tuple(r) for r in conn.execute(sa.select(backup_days)).all()) == kept


def _naive(row: dict[str, object]) -> dict[str, object]:
    """A row for a table reflected from the database (plain timestamps, in UTC)."""
    return {
        k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
        for k, v in row.items()
    }


def test_migrations_to_0005_and_0010_fill_the_day_totals(catalog_url: str) -> None:
    engine = sa.create_engine(catalog_url.replace("postgresql://", "postgresql+psycopg://"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    records = list(synthetic_records(300, 3, NOW))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        table = sa.Table("backups", sa.MetaData(), autoload_with=conn)
        conn.execute(table.insert(), [_naive(r.model_dump()) for r in records])
    engine.dispose()
    catalog = Catalog.open(catalog_url)
    try:
        since = NOW - timedelta(days=400)
        assert _as_tuples(catalog.day_counts(since)) == _day_totals(records, since)
        names = {i["name"] for i in sa.inspect(catalog.engine).get_indexes("backups")}
        assert {"ix_backups_started", "ix_backups_database_pinned"} <= names
        assert "ix_backups_status" not in names
        pruned = Counter(
            r.database
            for r in records
            if r.status == "deleted" and r.labels.get("deleted_by") == "retention"
        )
        assert sum(pruned.values()) > 0
        assert catalog.pruned_counts() == sorted(pruned.items())
    finally:
        catalog.engine.dispose()


def test_the_api_pages_by_cursor(tmp_path: Path) -> None:
    server = ApiServer.start(tmp_path / "home")
    try:
        server.catalog.save_backups(synthetic_records(300, 3, NOW))
        expected = [
            r.id
            for r in _newest_first(
                [r for r in synthetic_records(300, 3, NOW) if r.status != "deleted"]
            )
        ]
        with server.client(server.token("viewer")) as client:
            seen: list[str] = []
            query = "/backups?limit=40"
            while True:
                body = client.get(query).json()
                seen += [item["id"] for item in body["items"]]
                if body["next_cursor"] is None:
                    break
                query = f"/backups?limit=40&cursor={body['next_cursor']}"
            assert seen == expected
            offset = client.get("/backups?limit=40&offset=80").json()
            assert [i["id"] for i in offset["items"]] == expected[80:120]
            bad = client.get("/backups?cursor=nope")
            assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
            history = client.get("/history?days=400").json()
            assert sum(d["completed"] for d in history) == sum(
                1 for r in synthetic_records(300, 3, NOW) if r.status == "completed"
            )
    finally:
        server.stop()
