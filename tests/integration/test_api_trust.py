"""The service keeps secrets, files and accounts safe (issue 9, points 4 and 7): storage
targets by configured name only; login and passkey guesses throttled per (account, client)
so the owner is never locked out; download links die with their creator; tokens masked in
the audit and access logs; unknown user names audited as ``unknown``; JSON and label limits;
security headers on every response; no credential in any log line."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from pgvault import passwords
from support.apiserver import PASSWORD, ApiServer, assert_error, database_entry
from support.pgcluster import FreshPagila, PgCluster
from support.s3server import MotoServer
from support.vault import Vault

THROTTLE = {"login_max_failures": 3, "login_delay_seconds": 0, "login_lockout_seconds": 120}


def _from(server: ApiServer, address: str, token: str | None = None) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z is this host)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(
        base_url=server.url + "/api/v1", headers=headers, transport=transport, timeout=120
    )


@pytest.fixture
def served(tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila) -> Any:
    server = ApiServer.start(
        tmp_path / "home",
        access_log=True,
        api=THROTTLE,
        storage_targets={"second": {"url": str(tmp_path / "second")}},
        databases={
            "app": database_entry(
                pg18, fresh_pagila(), restore_passkey_hash=passwords.hash_secret("right key")
            )
        },
    )
    yield server
    server.stop()


def test_storage_is_chosen_by_configured_name_only(served: ApiServer, tmp_path: Path) -> None:
    anywhere = tmp_path / "anywhere"
    with served.client(served.token("operator")) as operator:
        for place in (str(anywhere), f"file://{anywhere}", "s3://other-bucket/x", "nope"):
            answer = operator.post("/backups", json={"database": "app", "storage": place})
            assert_error(answer, 400, "unknown storage target")
        done = operator.post(
            "/backups", params={"wait": "true"}, json={"database": "app", "storage": "second"}
        )
    assert done.status_code == 200, done.text
    assert done.json()["backup"]["storage"] == "second"
    assert not anywhere.exists() and not Path("file:").exists()


def test_guessing_a_password_never_locks_out_the_owner(
    served: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    owner = served.user("owner")
    caplog.set_level(logging.WARNING, logger="pgvault.throttle")
    with _from(served, "127.0.0.2") as attacker:
        codes = [
            attacker.post("/auth/login", json={"username": owner, "password": "guess"}).status_code
            for _ in range(5)
        ]
        right = attacker.post("/auth/login", json={"username": owner, "password": PASSWORD})
    with _from(served, "127.0.0.1") as own, _from(served, "127.0.0.3") as colleague:
        mine = own.post("/auth/login", json={"username": owner, "password": PASSWORD})
        other = served.user("viewer")
        theirs = colleague.post("/auth/login", json={"username": other, "password": PASSWORD})

    assert codes == [401, 401, 401, 429, 429]
    assert_error(right, 429, "too many failed logins")
    assert 0 < int(right.headers["Retry-After"]) <= 16
    assert mine.status_code == 200 and theirs.status_code == 200
    assert f"logins of user {owner} locked for 15 s after 3 failures" in caplog.text
    assert "guess" not in caplog.text


def test_restore_passkeys_are_throttled_per_client(served: ApiServer) -> None:
    with served.client(served.token("operator")) as operator:
        backup = operator.post("/backups", params={"wait": "true"}, json={"database": "app"})
    url = f"/backups/{backup.json()['backup']['id']}/restore"
    wrong = {"confirm": "app", "passkey": "wrong key"}
    with _from(served, "127.0.0.2", served.token("admin")) as admin:
        codes = [admin.post(url, json=wrong).status_code for _ in range(6)]
    assert codes == [403, 403, 403, 429, 429, 429]


def test_download_links_die_with_their_creator_and_their_token_is_masked(
    served: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").addHandler(caplog.handler)
    name = served.user("operator")
    access = served.login(name)["access_token"]
    with served.client(access) as user:
        backup = user.post("/backups", params={"wait": "true"}, json={"database": "app"})
        link = user.post(f"/backups/{backup.json()['backup']['id']}/download-link").json()
    token = link["url"].rsplit("/", 1)[-1]
    with served.client() as anyone:
        first = anyone.get(link["url"].removeprefix("/api/v1"))
        with served.client(served.token("owner")) as owner:
            assert owner.patch(f"/users/{name}", json={"disabled": True}).status_code == 200
            events = owner.get("/audit", params={"action": "downloads"}).json()
        after = anyone.get(link["url"].removeprefix("/api/v1"))
    logging.getLogger("uvicorn.access").removeHandler(caplog.handler)

    assert first.status_code == 200 and len(first.content) > 1000
    assert_error(after, 401, "creator")
    assert events and all(token not in str(e) for e in events)
    assert events[-1]["target"].startswith(f"token={token[:6]}…")
    assert events[-1]["actor"] == f"download-link:{name}"
    assert "/downloads/" in caplog.text and token not in caplog.text


def test_unknown_user_names_are_audited_as_unknown(served: ApiServer) -> None:
    typed = "correct horse battery staple"  # a password typed into the user name field
    with served.client() as anyone:
        anyone.post("/auth/login", json={"username": typed, "password": "x"})
    with served.client(served.token("admin")) as admin:
        events = admin.get("/audit", params={"action": "login"}).json()
    assert events[0]["actor"] == "unknown" and typed not in str(events)


def test_body_and_label_limits(served: ApiServer) -> None:
    with served.client(served.token("operator")) as operator:
        huge = operator.post(
            "/backups",
            content=b'{"database": "app", "labels": {"k": "' + b"x" * (2 << 20) + b'"}}',
            headers={"content-type": "application/json"},
        )
        long_key = operator.post("/backups", json={"database": "app", "labels": {"k" * 65: "v"}})
        long_value = operator.post("/backups", json={"database": "app", "labels": {"k": "v" * 257}})
    assert_error(huge, 413, "at most 1048576 bytes")
    assert_error(long_key, 422, "labels")
    assert_error(long_value, 422, "labels")


def test_security_headers_on_every_response(served: ApiServer) -> None:
    with served.client() as anyone:
        answers = {
            "health": anyone.get("/health"),
            "unauthorized": anyone.get("/backups"),
            "missing": anyone.get("/no/such/thing"),
            "login": anyone.post("/auth/login", json={"username": "x", "password": "y"}),
            "docs": httpx.get(served.url + "/docs"),
        }
    for name, answer in answers.items():
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["referrer-policy"] == "no-referrer", name
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], name
    assert answers["health"].headers["content-security-policy"].startswith("default-src 'none'")
    assert answers["login"].headers["cache-control"] == "no-store"


def test_verbose_logs_never_show_credentials(vault: Vault, s3_env: MotoServer) -> None:
    bucket = s3_env.create_bucket()
    endpoint = s3_env.endpoint_url.replace("http://", "http://someone:hunter2pw@")
    done = vault.cli(
        "-v",
        "-v",
        "list",
        "--from-storage",
        "--storage",
        f"s3://{bucket}/x",
        env={**s3_env.aws_env(), "AWS_ENDPOINT_URL": endpoint},
    )
    assert "DEBUG" in done.stderr and "botocore" in done.stderr  # the debug lines are there
    assert "hunter2pw" not in done.stderr and os.environ.get("NOPE") is None
    assert s3_env.aws_env()["AWS_SECRET_ACCESS_KEY"] not in done.stderr
