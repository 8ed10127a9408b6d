"""The test infrastructure itself: real clusters, pagila loads exactly, fingerprints compare."""

from __future__ import annotations

import psycopg
import pytest

from support.fingerprint import (
    assert_same_database,
    database_fingerprint,
    expected_pagila_counts,
    expected_pagila_fingerprint,
)
from support.pgcluster import FreshPagila, PgCluster


@pytest.mark.parametrize("cluster_name", ["pg18", "pg15"])
def test_pagila_loads_exactly(
    request: pytest.FixtureRequest, fresh_pagila: FreshPagila, cluster_name: str
) -> None:
    cluster: PgCluster = request.getfixturevalue(cluster_name)
    dbname = fresh_pagila(cluster)

    fp = database_fingerprint(cluster, dbname)

    assert cluster.major == int(cluster_name.removeprefix("pg"))
    assert fp.entries() == expected_pagila_fingerprint()
    assert fp.objects == expected_pagila_counts()
    assert 'CREATE DOMAIN public."bıgınt" AS bigint;' in fp.schema
    assert "\\restrict" not in fp.schema
    assert "\n-- " not in fp.schema


def test_server_runs_as_configured(pg18: PgCluster) -> None:
    settings = pg18.psql(
        "SELECT name || '=' || setting FROM pg_settings WHERE name IN "
        "('fsync', 'synchronous_commit', 'full_page_writes', 'server_encoding', "
        "'listen_addresses', 'password_encryption') ORDER BY name"
    )
    assert settings.splitlines() == [
        "fsync=off",
        "full_page_writes=off",
        "listen_addresses=127.0.0.1",
        "password_encryption=scram-sha-256",
        "server_encoding=UTF8",
        "synchronous_commit=off",
    ]
    assert pg18.psql("SHOW port") == str(pg18.port)


def test_password_is_checked(pg18: PgCluster) -> None:
    with psycopg.connect(pg18.url(with_password=True), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg18.url(password="wrong"), connect_timeout=10).close()


def test_template_is_closed_and_hidden(pg18: PgCluster, pagila_template: str) -> None:
    assert pagila_template == "pagila_tpl"
    assert pagila_template not in pg18.databases()
    flags = pg18.psql(
        f"SELECT datistemplate, datallowconn FROM pg_database WHERE datname = '{pagila_template}'"
    )
    assert flags == "t|f"


def test_url_hides_password_unless_asked(pg18: PgCluster) -> None:
    assert pg18.url() == f"postgresql://postgres@127.0.0.1:{pg18.port}/postgres"
    assert pg18.password not in pg18.url("x", user="alice")
    assert pg18.url(password="p@ss word").startswith("postgresql://postgres:p%40ss%20word@")


def test_fingerprints_equal_for_copies_and_differ_after_a_change(
    pg18: PgCluster, fresh_pagila: FreshPagila
) -> None:
    a, b = fresh_pagila(), fresh_pagila()
    assert {a, b} <= set(pg18.databases())
    fp_a = database_fingerprint(pg18, a)
    assert_same_database(fp_a, database_fingerprint(pg18, b))

    pg18.psql("DELETE FROM film_actor WHERE actor_id = 1 AND film_id = 1", dbname=b)

    with pytest.raises(AssertionError, match=r"table film_actor: source=5462:\w+ restored=5461:"):
        assert_same_database(fp_a, database_fingerprint(pg18, b))


def test_schema_difference_is_reported(pg18: PgCluster, fresh_pagila: FreshPagila) -> None:
    a, b = fresh_pagila(), fresh_pagila()
    pg18.psql("CREATE INDEX extra_idx ON actor (first_name)", dbname=b)

    with pytest.raises(AssertionError) as err:
        assert_same_database(database_fingerprint(pg18, a), database_fingerprint(pg18, b))
    assert "+CREATE INDEX extra_idx ON public.actor USING btree (first_name);" in str(err.value)
    assert "count of indexes (incl. partitioned): source=56 restored=57" in str(err.value)


def test_drop_database_ends_sessions(pg18: PgCluster, fresh_pagila: FreshPagila) -> None:
    name = fresh_pagila()
    with psycopg.connect(pg18.url(name, with_password=True), connect_timeout=10) as conn:
        conn.execute("SELECT 1")
        pg18.drop_database(name)
        assert name not in pg18.databases()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
