"""Property-based run of the whole API from its own ``/openapi.json`` (schemathesis) with an
owner API token, against the real server: no 5xx, and every answer matches the schema
(status codes, content types, bodies). Business outcomes of random valid data (404 for
random ids) are not failures here, so ``positive_data_acceptance`` is left out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from support.apiserver import ApiServer, database_entry
from support.pgcluster import PgCluster

EXAMPLES = int(os.environ.get("PGVAULT_FUZZ_EXAMPLES", "12"))  # per operation
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pg18: PgCluster) -> Iterator[ApiServer]:
    """A service with one configured database that does not exist (nothing is touched)."""
    server = ApiServer.start(
        tmp_path_factory.mktemp("fuzz") / "home",
        databases={"app": database_entry(pg18, "api_fuzz_missing")},
        api={"login_delay_seconds": 0},
    )
    with server.client() as client:
        client.post("/setup", json={"username": "root", "password": "root password"})
    yield server
    server.stop()


def test_api_matches_its_schema(api: ApiServer) -> None:
    """Every operation, PGVAULT_FUZZ_EXAMPLES (default 12) generated cases each.

    schemathesis's pytest plugin does not run on pytest 9 ('Function' has no '_nodeid'), so
    operations are driven through their hypothesis strategies here."""
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {api.token('owner')}"}
    failures: list[str] = []
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        count += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Case) -> None:
            case.call_and_validate(base_url=api.url, headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert count > 25
    assert not failures, "\n\n".join(failures)


def test_openapi_documents_every_resource(api: ApiServer, tmp_path: Path) -> None:
    with api.client() as client:
        paths = set(client.get(api.url + "/openapi.json").json()["paths"])
    assert {
        "/api/v1/health",
        "/api/v1/backups",
        "/api/v1/backups/{backup_id}/restore",
        "/api/v1/databases/{name}/restore-upload",
        "/api/v1/jobs/{job_id}/events",
        "/api/v1/auth/login",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/stats",
    } <= paths
