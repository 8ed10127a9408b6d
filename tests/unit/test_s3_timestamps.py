"""The S3 timestamp parser pgvault's clients use: the same datetimes as botocore's own
(dateutil) parser for every format S3 sends, aware UTC for naive ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.utils import parse_timestamp as botocore_parse

from pgvault.storage.s3_times import parse_timestamp


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-02T02:20:36.000Z",
        "2026-12-02T02:20:36Z",
        "2026-12-02T02:20:36.123456+01:00",
        "Wed, 02 Dec 2026 02:20:36 GMT",
        "1700000000",
        1700000000,
        1700000000.5,
    ],
)
def test_same_instant_as_botocore(value: object) -> None:
    ours = parse_timestamp(value)
    assert ours.tzinfo is not None
    assert ours == botocore_parse(value)


def test_formats_give_the_expected_utc_instant() -> None:
    expected = datetime(2026, 12, 2, 2, 20, 36, tzinfo=UTC)
    assert parse_timestamp("2026-12-02T02:20:36.000Z") == expected
    assert parse_timestamp("Wed, 02 Dec 2026 02:20:36 GMT") == expected
    assert parse_timestamp("2026-12-02T03:20:36+01:00") == expected
    assert parse_timestamp("2026-12-02T03:20:36+01:00").utcoffset() == timedelta(hours=1)
    assert parse_timestamp("2026-12-02T02:20:36").tzinfo == UTC
    assert parse_timestamp("2026-12-02T04:20:36+02:00").tzinfo == timezone(timedelta(hours=2))


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("not a date")
