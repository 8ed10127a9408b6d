"""Authentication, roles and errors of the service, over real HTTP (uvicorn) with a real
SQLite catalog: setup, login, throttling, expired/tampered tokens, refresh rotation and
revocation, API tokens, the role matrix, users, the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from support.apiserver import ROLES, SECRET, ApiServer, assert_error


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One service for the module; login throttling after 3 failures, no delay."""
    server = ApiServer.start(
        tmp_path_factory.mktemp("api") / "home",
        api={"login_max_failures": 3, "login_delay_seconds": 0, "login_lockout_seconds": 60},
    )
    yield server
    server.stop()


def test_setup_creates_the_first_owner_once(tmp_path: Path) -> None:
    server = ApiServer.start(tmp_path / "home")
    try:
        with server.client() as client:
            first = client.post("/setup", json={"username": "root", "password": "rootpass1"})
            assert first.status_code == 201 and first.json()["role"] == "owner"
            again = client.post("/setup", json={"username": "eve", "password": "evepass12"})
            assert_error(again, 409, "setup is done")
            tokens = server.login("root", "rootpass1")
            me = client.get(
                "/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert me.json() == {"kind": "user", "name": "root", "role": "owner"}
    finally:
        server.stop()


def test_login_answers_a_token_pair_and_wrong_passwords_are_throttled(api: ApiServer) -> None:
    name = api.user("viewer")
    pair = api.login(name)
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 15 * 60
    assert pair["refresh_token"].startswith("pgvr_")
    with api.client() as client:
        for _ in range(3):
            bad = client.post("/auth/login", json={"username": name, "password": "wrong-one"})
            assert_error(bad, 401, "wrong user name or password")
        locked = client.post(
            "/auth/login", json={"username": name, "password": "correct horse battery"}
        )
        assert_error(locked, 429, "too many failed logins")
        assert int(locked.headers["Retry-After"]) > 0
        unknown = client.post("/auth/login", json={"username": "ghost", "password": "whatever1"})
        assert unknown.status_code in (401, 429)  # the address may be locked by now too
    with api.client(api.token("admin")) as admin:
        events = admin.get("/audit", params={"action": "login"}).json()
    assert {(e["actor"], e["result"], e["status_code"]) for e in events} >= {
        (name, "ok", 200),
        (name, "denied", 401),
        (name, "denied", 429),
    }


def _jwt(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_expired_tampered_and_foreign_tokens_are_401(api: ApiServer) -> None:
    name = api.user("viewer")
    pair = api.login(name)
    access = pair["access_token"]
    claims = jwt.decode(access, SECRET, algorithms=["HS256"])
    past = datetime.now(UTC) - timedelta(minutes=5)
    expired = _jwt({**claims, "iat": past - timedelta(minutes=15), "exp": past})
    head, body, signature = access.split(".")
    assert b'"typ":"access"' in jwt.utils.base64url_decode(body)  # type: ignore[attr-defined]
    tampered_body = jwt.utils.base64url_encode(  # type: ignore[attr-defined]
        jwt.utils.base64url_decode(body).replace(b'"typ":"access"', b'"typ":"accesS"')  # type: ignore[attr-defined]
    ).decode()
    tampered = ".".join([head, _jwt({**claims, "ver": 99}).split(".")[1], signature])
    cases = {
        "expired": (expired, "expired"),
        "tampered": (tampered, "not valid"),
        "tampered-body": (f"{head}.{tampered_body}.{signature}", "not valid"),
        "foreign": (_jwt(claims, "another-secret-" + "y" * 40), "not valid"),
        "none-alg": (jwt.encode(claims, None, algorithm="none"), "not valid"),
        "download-token": (_jwt({**claims, "typ": "download"}), "not valid here"),
        "garbage": ("abc.def", "not valid"),
        "unknown-api-token": ("pgv_" + "A" * 43, "unknown API token"),
    }
    for label, (token, message) in cases.items():
        with api.client(token) as client:
            answer = client.get("/backups")
        assert answer.status_code == 401, label
        body = assert_error(answer, 401, message)
        assert answer.headers["WWW-Authenticate"] == "Bearer", label
        assert body["error"] == "unauthorized"
    with api.client(access) as client:
        assert client.get("/backups").status_code == 200


def test_refresh_rotates_and_a_replayed_refresh_token_revokes_the_family(api: ApiServer) -> None:
    name = api.user("operator")
    first = api.login(name)
    with api.client() as client:
        second = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200
        new = second.json()
        assert new["refresh_token"] != first["refresh_token"]
        replay = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert_error(replay, 401, "already used")
        # the replay revoked the family: the rotated token is dead too
        dead = client.post("/auth/refresh", json={"refresh_token": new["refresh_token"]})
        assert_error(dead, 401, "already used or revoked")
        assert_error(client.post("/auth/refresh", json={"refresh_token": "nope"}), 401)


def test_logout_and_password_change_revoke_sessions(api: ApiServer) -> None:
    name = api.user("viewer", password="first password")
    pair = api.login(name, "first password")
    with api.client(pair["access_token"]) as client:
        assert (
            client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code
            == 204
        )
        assert_error(client.get("/backups"), 401, "session was ended")
    with api.client() as client:
        refused = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_error(refused, 401)
    pair = api.login(name, "first password")
    with api.client(pair["access_token"]) as client:
        wrong = client.post(
            "/auth/password",
            json={"current_password": "not it at all", "new_password": "second password"},
        )
        assert_error(wrong, 401, "current password is wrong")
        done = client.post(
            "/auth/password",
            json={"current_password": "first password", "new_password": "second password"},
        )
        assert done.status_code == 204
        assert_error(client.get("/backups"), 401)
    api.login(name, "second password")


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(api: ApiServer) -> None:
    with api.client(api.token("owner")) as owner:
        made = owner.post("/tokens", json={"name": "ci", "role": "operator"})
        assert made.status_code == 201
        plain = made.json()["token"]
        listed = owner.get("/tokens").json()
        assert all("token" not in t and "token_hash" not in t for t in listed)
        with api.client(plain) as ci:
            assert ci.get("/auth/me").json() == {"kind": "token", "name": "ci", "role": "operator"}
            assert owner.delete(f"/tokens/{made.json()['id']}").status_code == 204
            assert_error(ci.get("/backups"), 401, "revoked")
    stored = api.catalog.engine.connect().exec_driver_sql("SELECT token_hash FROM api_tokens")
    hashes = [row[0] for row in stored]
    assert plain not in hashes and all(len(h) == 64 for h in hashes)


# Each endpoint with the lowest role allowed; for allowed roles the call fails for another
# reason (unknown id or database: 400/404) or succeeds, never 401/403.
MATRIX: list[tuple[str, str, dict[str, Any], str]] = [
    ("GET", "/databases", {}, "viewer"),
    ("GET", "/backups", {}, "viewer"),
    ("GET", "/backups/nope", {}, "viewer"),
    ("GET", "/jobs", {}, "viewer"),
    ("GET", "/jobs/nope", {}, "viewer"),
    ("GET", "/jobs/nope/events", {}, "viewer"),
    ("GET", "/stats", {}, "viewer"),
    ("GET", "/auth/me", {}, "viewer"),
    ("POST", "/backups", {"json": {"database": "nope"}}, "operator"),
    ("GET", "/backups/nope/download", {}, "operator"),
    ("POST", "/backups/nope/download-link", {}, "operator"),
    ("POST", "/backups/nope/verify", {}, "operator"),
    ("GET", "/databases/nope/dump", {}, "operator"),
    ("POST", "/jobs/nope/cancel", {}, "operator"),
    ("DELETE", "/backups/nope", {}, "admin"),
    ("POST", "/backups/nope/restore", {"json": {"confirm": "nope"}}, "admin"),
    (
        "POST",
        "/databases/nope/restore-upload",
        {"files": {"file": ("x.dump", b"PGDMP")}, "data": {"confirm": "nope"}},
        "admin",
    ),
    ("GET", "/audit", {}, "admin"),
    ("GET", "/users", {}, "owner"),
    ("GET", "/users/nobody", {}, "owner"),
    ("PATCH", "/users/nobody", {"json": {"disabled": True}}, "owner"),
    ("DELETE", "/users/nobody", {}, "owner"),
    ("POST", "/users", {"json": {"username": "x", "password": "short", "role": "x"}}, "owner"),
    ("GET", "/tokens", {}, "owner"),
    ("POST", "/tokens", {"json": {"name": "", "role": "viewer"}}, "owner"),
    ("DELETE", "/tokens/nope", {}, "owner"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "lowest"), MATRIX, ids=lambda v: str(v))
def test_role_matrix(
    api: ApiServer, method: str, path: str, kwargs: dict[str, Any], lowest: str
) -> None:
    with api.client() as anonymous:
        assert_error(anonymous.request(method, path, **kwargs), 401, "authentication required")
    for role in ROLES:
        with api.client(api.token(role)) as client:
            answer = client.request(method, path, **kwargs)
        if ROLES.index(role) >= ROLES.index(lowest):
            assert answer.status_code not in (401, 403), (role, answer.text)
        else:
            assert_error(answer, 403, f"needs the {lowest} role")


def test_health_is_public_and_detailed_only_with_credentials(api: ApiServer) -> None:
    with api.client() as anonymous:
        public = anonymous.get("/health").json()
    assert public["status"] == "ok" and public["databases"] is None
    assert public["checks"]["pg_dump"]["versions"]
    with api.client(api.token("viewer")) as viewer:
        assert viewer.get("/health").json()["databases"] == []


def test_users_are_managed_by_owners_and_the_last_owner_stays(api: ApiServer) -> None:
    with api.client(api.token("owner")) as owner:
        made = owner.post(
            "/users", json={"username": "dora", "password": "dora pass 1", "role": "viewer"}
        )
        assert made.status_code == 201 and "password_hash" not in made.json()
        assert_error(
            owner.post(
                "/users", json={"username": "dora", "password": "dora pass 1", "role": "viewer"}
            ),
            409,
            "exists already",
        )
        assert_error(
            owner.post("/users", json={"username": "ed", "password": "short", "role": "viewer"}),
            422,
        )
        pair = api.login("dora", "dora pass 1")
        assert owner.patch("/users/dora", json={"role": "admin"}).json()["role"] == "admin"
        with api.client(pair["access_token"]) as dora:
            assert dora.get("/audit").status_code == 200  # the new role applies at once
            assert owner.patch("/users/dora", json={"disabled": True}).json()["disabled"]
            assert_error(dora.get("/backups"), 401, "disabled")
        only = api.user("owner")
        others = [u["username"] for u in owner.get("/users").json() if u["role"] == "owner"]
        for name in others:
            if name != only:
                owner.patch(f"/users/{name}", json={"role": "viewer"})
        assert_error(owner.delete(f"/users/{only}"), 403, "last owner")
        assert owner.delete("/users/dora").status_code == 204
    with api.client(api.token("admin")) as admin:
        actions = {e["action"] for e in admin.get("/audit").json()}
    assert {"POST /api/v1/users", "PATCH /api/v1/users/{username}"} <= actions


def test_errors_are_json_without_traces(api: ApiServer) -> None:
    with api.client(api.token("owner")) as client:
        assert_error(client.get("/no/such/thing"), 404, "no such endpoint")
        assert_error(client.post("/backups", content=b"{not json"), 422)
        assert_error(client.post("/backups", json={"database": 5}), 422, "database")
        assert_error(client.get("/backups", params={"limit": 0}), 422, "limit")
        assert_error(client.put("/backups"), 405)
