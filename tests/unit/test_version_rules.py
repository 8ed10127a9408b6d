"""The version fallback's rewrites (one per construct newer pg_dumps write that older servers
reject), the choice of client tools per server, and dump headers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pgvault.dumps.header import DumpVersions, dump_versions
from pgvault.dumps.sqlscript import SetFilter, version_error
from pgvault.postgres import bundled
from pgvault.postgres.tools import Tool, rank

SUB = (
    "CREATE SUBSCRIPTION s CONNECTION 'host=h dbname=WITH (x), y' PUBLICATION p WITH "
    "(connect = false, slot_name = 's', {option});\n"
)


def _filtered(sql: str, major: int | None, known: set[str] | None = None) -> tuple[str, SetFilter]:
    out = io.BytesIO()
    sql_filter = SetFilter(out, known or {"statement_timeout"}, major)
    sql_filter.write(sql.encode())
    sql_filter.close()
    return out.getvalue().decode(), sql_filter


@pytest.mark.parametrize(
    ("option", "added", "noted"),
    [
        ("run_as_owner = true", 16, False),  # pg_dump >= 16 writes it for a 15 server
        ("password_required = false", 16, True),
        ("origin = none", 16, True),
        ("origin = any", 16, False),
        ("failover = true", 17, True),
        ("failover = false", 17, False),
    ],
)
def test_subscription_options_are_dropped_below_the_version_that_added_them(
    option: str, added: int, noted: bool
) -> None:
    older, sql_filter = _filtered(SUB.format(option=option), added - 1)
    same, _ = _filtered(SUB.format(option=option), added)

    assert option not in older
    assert older.endswith("WITH (connect = false, slot_name = 's');\n")
    assert "CONNECTION 'host=h dbname=WITH (x), y'" in older  # quotes untouched
    assert same == SUB.format(option=option)
    assert bool(sql_filter.notes) is noted


def test_streaming_parallel_becomes_on_before_16() -> None:
    sql = SUB.format(option="streaming = parallel")

    assert "streaming = on)" in _filtered(sql, 15)[0]
    assert _filtered(sql, 16)[0] == sql


def test_publish_generated_columns_is_dropped_before_18() -> None:
    sql = (
        "CREATE PUBLICATION p FOR TABLE t WITH (publish = 'insert, update', "
        "publish_generated_columns = stored);\n"
    )

    older, sql_filter = _filtered(sql, 17)

    assert older == "CREATE PUBLICATION p FOR TABLE t WITH (publish = 'insert, update');\n"
    assert sql_filter.notes  # older servers never publish generated columns: said
    assert _filtered(sql, 18)[0] == sql


def test_a_with_clause_left_empty_goes_away() -> None:
    sql = "CREATE PUBLICATION p FOR ALL TABLES WITH (publish_generated_columns = none);\n"

    assert _filtered(sql, 16)[0] == "CREATE PUBLICATION p FOR ALL TABLES;\n"


def test_transaction_timeout_is_dropped_on_servers_without_it() -> None:
    sql = "SET transaction_timeout = 0;\nSET statement_timeout = 0;\n"

    out, sql_filter = _filtered(sql, 16)

    assert out == "SET statement_timeout = 0;\n"
    assert sql_filter.dropped == ["transaction_timeout"]


def test_without_a_server_version_statements_are_kept() -> None:
    sql = SUB.format(option="run_as_owner = true")

    assert _filtered(sql, None)[0] == sql


def test_copy_data_that_looks_like_a_subscription_is_untouched() -> None:
    row = SUB.format(option="run_as_owner = true").replace(";\n", "")
    sql = f"COPY t (line) FROM stdin;\n{row}\n\\.\n"

    assert _filtered(sql, 15)[0] == sql


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('ERROR:  unrecognized configuration parameter "transaction_timeout"', True),
        ('ERROR:  unrecognized subscription parameter: "run_as_owner"', True),
        ('ERROR:  unrecognized publication parameter: "publish_generated_columns"', True),
        ("ERROR:  streaming requires a Boolean value", True),
        ('ERROR:  role "appowner" does not exist', False),
    ],
)
def test_version_errors_are_recognised(line: str, expected: bool) -> None:
    assert version_error(line) is expected


def _tool(major: int, minor: int, where: str = "/x") -> Tool:
    return Tool(major, minor, "pg_dump", Path(where) / "pg_dump")


def test_the_same_major_comes_first_then_the_newest_newer() -> None:
    found = [_tool(18, 6), _tool(17, 2), _tool(16, 9), _tool(15, 18), _tool(15, 3)]

    assert rank(found, 16) == [_tool(16, 9), _tool(18, 6), _tool(17, 2)]
    assert rank(found, 15)[:2] == [_tool(15, 18), _tool(15, 3)]
    assert rank(found, 14) == [
        _tool(18, 6),
        _tool(17, 2),
        _tool(16, 9),
        _tool(15, 18),
        _tool(15, 3),
    ]
    assert rank(found, 19) == []  # older tools cannot dump a newer server
    assert rank(found, None)[0] == _tool(18, 6)


def test_a_restore_needs_a_pg_restore_that_reads_the_archive() -> None:
    found = [_tool(18, 6), _tool(15, 18)]

    assert rank(found, 15, at_least=18) == [_tool(18, 6)]
    assert rank(found, 15, at_least=15)[0] == _tool(15, 18)


def test_equal_versions_keep_their_order() -> None:
    zstd, gzip = _tool(18, 6, "/zstd"), _tool(18, 6, "/gzip")

    assert rank([zstd, gzip], 18) == [zstd, gzip]


def test_dump_headers_name_their_pg_dump() -> None:
    plain = (
        b"--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.18\n"
        b"-- Dumped by pg_dump version 18.6\n"
    )

    assert dump_versions(plain, "plain") == DumpVersions("18.6", "15.18")
    assert dump_versions(b"PGDMP\x01\x10", "custom") is None  # cut short
    assert dump_versions(b"SELECT 1;", "plain") is None


def test_the_bundled_tarball_unpacks_only_the_client_part(tmp_path: Path) -> None:
    stem = "postgresql-99.1.0-test"
    tree = tmp_path / "tree" / stem
    for rel in ("bin/pg_dump", "lib/libpq.so.5", "lib/hstore.so", "share/x.sql", "include/y.h"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    tarball = tmp_path / f"{stem}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, arcname=stem)

    unpacked = bundled._unpack(tarball, tmp_path / "cache", stem)
    again = bundled._unpack(tarball, tmp_path / "cache", stem)  # already there: kept

    files = sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file())
    assert files == ["bin/pg_dump", "lib/libpq.so.5"]
    assert again == unpacked
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == [
        stem
    ]
