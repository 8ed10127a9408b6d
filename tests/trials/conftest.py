"""The trials' fixtures (a PostgreSQL 18 cluster, a moto S3 server, the seed) and the one
summary line each trial prints at the end of the run.

The seed of the random kill points and malformations is ``PGVAULT_TRIALS_SEED`` when set
(to replay a run), else random; it is printed with the figures.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.pgcluster import PgCluster, embedded_bindir
from support.s3server import MotoServer
from support.trialfigures import FIGURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/trials is marked ``trials`` (``-m 'not trials'`` skips them)."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.path)).is_relative_to(here):
            item.add_marker(pytest.mark.trials)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The trials' figures, one line each, after the test results."""
    if FIGURES:
        terminalreporter.section("trials")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def seed() -> int:
    """The seed of this run's random choices."""
    given = os.environ.get("PGVAULT_TRIALS_SEED")
    return int(given) if given else secrets.randbelow(2**31)


@pytest.fixture
def rng(seed: int, request: pytest.FixtureRequest) -> random.Random:
    """A random generator per trial, derived from the seed and the trial's name."""
    return random.Random(f"{seed}:{request.node.name}")


@pytest.fixture(scope="session")
def trial_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> PgCluster:
    """A PostgreSQL 18 cluster for the trials."""
    cluster = PgCluster.start(embedded_bindir(), tmp_path_factory.mktemp("trials-pg18"))
    request.addfinalizer(cluster.destroy)
    return cluster


@pytest.fixture(scope="session")
def trial_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto S3 server for the upload trials."""
    server = MotoServer.start(tmp_path_factory.mktemp("trials-moto"))
    try:
        yield server
    finally:
        server.stop()
