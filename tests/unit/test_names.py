"""Backup ids and storage key templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pgvault import runtime
from pgvault.backups import naming
from pgvault.config.settings import DEFAULT_NAME_TEMPLATE
from pgvault.errors import ConfigError, StorageError

SEEDS_TEMPLATE = "{app}-{environment}-on-{started:%Y-%m-%d-at-%I-%M-%S-%p}-{tz}.dump"
STARTED = datetime(2026, 11, 21, 9, 45, 7, tzinfo=UTC)  # 15:15:07 in India


def test_seeds_template_in_india_names_the_local_time_and_zone() -> None:
    key = naming.render_key(
        SEEDS_TEMPLATE,
        started=STARTED,
        timezone="Asia/Kolkata",
        database="app",
        environment="production",
    )

    assert key == "app-production-on-2026-11-21-at-03-15-07-PM-IST.dump"


def test_seeds_template_in_utc_and_in_the_morning() -> None:
    key = naming.render_key(
        SEEDS_TEMPLATE,
        started=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        timezone="UTC",
        database="billing",
        environment="staging",
    )

    assert key == "billing-staging-on-2026-01-02-at-03-04-05-AM-UTC.dump"


def test_default_template() -> None:
    key = naming.render_key(
        DEFAULT_NAME_TEMPLATE,
        started=datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
        timezone="Asia/Kolkata",  # already 1 January there
        id="20261231-233000-beef",
        database="app",
        ext=".dump.zst",
    )

    assert key == "app/2027/01/01/20261231-233000-beef.dump.zst"


@pytest.mark.parametrize(
    ("template", "fields"),
    [
        ("../{database}.dump", {"database": "app"}),
        ("/etc/{database}", {"database": "app"}),
        ("{database}/x.dump", {"database": ".."}),
        ("{database}/../../x", {"database": "app"}),
        ("a//{id}", {"id": "1"}),
        ("{database}\\x", {"database": "app"}),
        ("{database}", {"database": "app\nx"}),
        ("{database}", {"database": ""}),
    ],
)
def test_unsafe_keys_are_refused(template: str, fields: dict[str, str]) -> None:
    with pytest.raises(StorageError, match="unsafe"):
        naming.render_key(template, started=STARTED, timezone="UTC", **fields)


def test_template_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        naming.render_key("{nope}.dump", started=STARTED, timezone="UTC")
    with pytest.raises(ConfigError, match="invalid name template"):
        naming.render_key("{started:%Y", started=STARTED, timezone="UTC")
    with pytest.raises(ConfigError, match="only plain field names"):
        naming.render_key("{started.__class__.__init__}", started=STARTED, timezone="UTC")
    with pytest.raises(ConfigError, match="only plain field names"):
        naming.render_key("{id[0]}", started=STARTED, timezone="UTC", id="x")
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        naming.render_key("{id}", started=STARTED, timezone="Mars/Olympus", id="x")


@pytest.mark.parametrize(
    ("dump_format", "compression", "by", "ext"),
    [
        ("custom", "zstd", "pg_dump", ".dump"),
        ("custom", "zstd", "pgvault", ".dump.zst"),
        ("custom", "none", None, ".dump"),
        ("plain", "gzip", "pgvault", ".sql.gz"),
        ("plain", "none", None, ".sql"),
        ("directory", "gzip", "pg_dump", ".tar"),
        ("directory", "zstd", "pgvault", ".tar.zst"),
    ],
)
def test_extension(dump_format: str, compression: str, by: str | None, ext: str) -> None:
    assert naming.extension(dump_format, compression, by) == ext


def test_ids_are_utc_sortable_and_distinct() -> None:
    first = runtime.new_id(datetime(2026, 11, 21, 5, 30, 12, tzinfo=UTC))
    later = runtime.new_id(datetime(2026, 11, 21, 5, 30, 13, tzinfo=UTC))
    ids = {runtime.new_id(STARTED) for _ in range(50)}

    assert re.fullmatch(r"20261121-053012-[0-9a-f]{4}", first)
    assert first < later
    assert len(ids) > 40  # 16 random bits each
