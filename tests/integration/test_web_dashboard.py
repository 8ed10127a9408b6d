"""The web dashboard in a real browser: Playwright driving Debian's Chromium against a real
``pgvault serve`` (one process: API, pages, scheduler), real PostgreSQL 18 with Pagila, local
storage and a moto S3 server for the second copy.

Shown: sign-in, a wrong password, sign-out and the keyboard; what a viewer does not see and
the 403 a forged form gets, and a form without its CSRF token refused; an operator's backup
from "New backup" watched to completion and its size on the overview; the restore wizard's
preview of Pagila's tables, a wrong confirmation that changes nothing and a right one that
restores an identical database; the retention preview's rule per backup and the backups
table paged over 10,000 rows; no request to another origin, a CSP without inline scripts,
and a screenshot of every page at 1280 and 390 px (no horizontal scroll at 390).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pgvault import backups, databases
from pgvault.catalog import jobs as job_rows
from pgvault.web import format as fmt
from support.browser import (
    DESKTOP,
    PHONE,
    Guarded,
    csrf_of,
    fits_width,
    output_dir,
    script_src,
)
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import PgCluster
from support.s3server import MotoServer
from support.vault import user_table_counts
from support.webserver import CHROMIUM, CHROMIUM_ARGS, WebServer, seed_backups

SEEDED = 10_000
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Dashboard:
    """The served dashboard, its Pagila database ``app`` and one user per role."""

    server: WebServer
    cluster: PgCluster
    app_db: str
    users: dict[str, str]


@pytest.fixture(scope="module")
def dashboard(
    pg18: PgCluster,
    pagila_template: str,
    moto_server: MotoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Dashboard]:
    """``pgvault serve`` with ``app`` (Pagila; local + S3 copy; keep_last 3; a daily schedule
    in Europe/Berlin), ``archive`` (a database that does not exist, 30 seeded backups,
    keep_last 2 + daily 3) and 10,000 seeded backups of an unconfigured ``legacy``."""
    app_db = f"web_app_{secrets.token_hex(3)}"
    pg18.create_database(app_db, template=pagila_template)
    bucket = moto_server.create_bucket()
    home = tmp_path_factory.mktemp("web")
    config = {
        "default_storage": "local",
        "scheduler": {"prune_cron": ""},  # no cleanup run in the middle of a test
        "storage_targets": {
            "local": {"url": str(home / "backups")},
            "offsite": {
                "url": f"s3://{bucket}/pgvault",
                "endpoint_url": moto_server.endpoint_url,
                "path_style": True,
            },
        },
        "databases": {
            "app": {
                "url": pg18.url(app_db, with_password=True),
                "storage": ["local", "offsite"],
                "retention": {"keep_last": 3},
                "schedules": {"daily": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}},
            },
            "archive": {
                "url": pg18.url("web_archive_missing", with_password=True),
                "retention": {"keep_last": 2, "keep_daily": 3},
            },
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in moto_server.aws_env().items():
            patch.setenv(name, value)
        server = WebServer.start(home, config, moto_server.aws_env())
        try:
            seed_backups(server.catalog, "legacy", SEEDED)
            midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            seed_backups(server.catalog, "archive", 30, start=midnight - timedelta(days=1))
            roles = ("viewer", "operator", "admin", "owner")
            yield Dashboard(server, pg18, app_db, {role: server.user(role) for role in roles})
        finally:
            server.stop()
            for db in pg18.databases():
                if db == app_db or db.startswith(f"{app_db}_"):
                    pg18.drop_database(db)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs the chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def web(dashboard: Dashboard, browser: Browser) -> Iterator[Guarded]:
    """Guarded contexts on the dashboard; the test fails if any page asked another origin."""
    guarded = Guarded(browser, dashboard.server.url)
    yield guarded
    guarded.close()
    assert guarded.outside == [], f"requests left the server's origin: {guarded.outside}"


@pytest.fixture(scope="module")
def shared_backup(dashboard: Dashboard) -> str:
    """A completed backup of ``app`` that tests only look at (never restore or delete)."""
    return _backup(dashboard)


def _backup(dashboard: Dashboard) -> str:
    """A completed backup of ``app`` taken in the test process (same catalog and storage)."""
    target = databases.from_config(dashboard.server.settings, "app")
    request = backups.BackupRequest(target=target, created_by="test")
    return backups.create(dashboard.server.settings, dashboard.server.catalog, request).id


def test_sign_in_wrong_password_keyboard_and_sign_out(dashboard: Dashboard, web: Guarded) -> None:
    page = web.context(timezone_id="America/New_York").new_page()
    page.goto("/backups")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fbackups$"))
    page.get_by_label("User name").fill(dashboard.users["viewer"])
    page.get_by_label("Password").fill("not the password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
    assert page.context.cookies() and not any(
        c["name"] == "pgvault_session" for c in page.context.cookies()
    )
    page.get_by_label("User name").fill(dashboard.users["viewer"])
    page.get_by_label("Password").focus()
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/backups$"))
    session = next(c for c in page.context.cookies() if c["name"] == "pgvault_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    stamp = page.locator("td time").first
    assert stamp.get_attribute("title", timeout=5000).endswith("UTC")
    expect(stamp).to_contain_text(re.compile(r"EST|EDT|GMT-[45]"))
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?bye=1$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_viewer_sees_no_restore_or_delete_and_forged_forms_get_403(
    dashboard: Dashboard, web: Guarded, shared_backup: str
) -> None:
    backup_id = shared_backup
    viewer = web.signed_in(dashboard.users["viewer"])
    viewer.goto(f"/backups/{backup_id}")
    expect(viewer.get_by_role("heading", level=1)).to_contain_text(backup_id)
    for name in ("Restore…", "Delete…", "Download", "Verify"):
        expect(viewer.get_by_role("link", name=name)).to_have_count(0)
        expect(viewer.get_by_role("button", name=name)).to_have_count(0)
    expect(viewer.get_by_role("navigation").get_by_role("link", name="Restore")).to_have_count(0)
    token = csrf_of(viewer)
    forged = viewer.context.request.post(
        f"/backups/{backup_id}/delete", form={"csrf": token}, max_redirects=0
    )
    assert forged.status == 403 and "needs the admin role" in forged.text()
    restore = viewer.context.request.post(
        "/restore", form={"csrf": token, "backup": backup_id, "target": "app", "confirm": "app"}
    )
    assert restore.status == 403
    assert viewer.goto("/restore").status == 403

    admin = web.signed_in(dashboard.users["admin"])
    no_token = admin.context.request.post(f"/backups/{backup_id}/delete", max_redirects=0)
    wrong = admin.context.request.post(
        f"/backups/{backup_id}/delete", form={"csrf": token}, max_redirects=0
    )
    assert no_token.status == 403 and "reload the page" in no_token.text()
    assert wrong.status == 403
    assert dashboard.server.catalog.get_backup(backup_id).status == "completed"


def test_operator_backs_up_pagila_from_new_backup_and_sees_it_complete(
    dashboard: Dashboard, web: Guarded
) -> None:
    page = web.signed_in(dashboard.users["operator"])
    page.get_by_role("navigation").get_by_role("link", name="New backup").click()
    page.get_by_label("Database").select_option("app")  # the script reloads the form
    tables = page.get_by_label("Specific tables")
    expect(tables.locator("option", has_text="public.actor")).to_have_count(1)
    every = user_table_counts(dashboard.cluster, dashboard.app_db)
    expect(tables.locator("option")).to_have_count(len(every))
    page.get_by_label("Labels").fill("ticket=WEB-1")
    url = dashboard.cluster.url(dashboard.app_db, with_password=True)
    with psycopg.connect(url) as blocker:  # pg_dump waits for this lock: the job stays running
        blocker.execute("LOCK TABLE public.actor IN ACCESS EXCLUSIVE MODE")
        page.get_by_role("button", name="Start backup").click()
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]+$"))
        live = page.locator("[data-job]")
        expect(live.locator('[data-field="status"]')).to_have_text("running")
        expect(live.locator("progress")).to_have_count(1)
        blocker.rollback()
    expect(page.get_by_role("status")).to_contain_text("completed", timeout=90_000)
    record = job_rows.get_job(dashboard.server.catalog, page.url.rsplit("/", 1)[-1])
    assert record is not None and record.status == "completed", record
    backup = dashboard.server.catalog.get_backup(str(record.backup_id))
    assert backup.labels.get("ticket") == "WEB-1"
    assert backup.created_by == dashboard.users["operator"]
    page.get_by_role("navigation").get_by_role("link", name="Overview").click()
    card = page.locator("section.card", has=page.get_by_role("heading", name=re.compile("^app")))
    newest = dashboard.server.catalog.list_backups(database="app", status="completed", limit=1)[0]
    expect(card.get_by_test_id("last-size")).to_have_text(fmt.size(newest.size_bytes))
    expect(card.locator("svg.spark").first).to_be_visible()


def test_restore_wizard_preview_refusal_and_identical_restore(
    dashboard: Dashboard, web: Guarded
) -> None:
    cluster, live = dashboard.cluster, dashboard.app_db
    original = database_fingerprint(cluster, live)
    backup_id = _backup(dashboard)
    cluster.psql("CREATE TABLE junk AS SELECT 1 AS x; DELETE FROM payment", dbname=live)
    changed = database_fingerprint(cluster, live)
    before = set(cluster.databases())

    page = web.signed_in(dashboard.users["admin"])
    page.goto(f"/backups/{backup_id}")
    page.get_by_role("link", name="Restore…").click()
    page.get_by_label("Restore into", exact=True).select_option("app")
    expect(page.get_by_role("radio", name=re.compile("^swap:"))).to_be_checked()
    page.get_by_role("button", name="Show what would happen").click()
    preview = page.get_by_test_id("preview-tables")
    actor = preview.locator("tr", has_text="public.actor")
    expect(actor.locator("td").nth(1)).to_have_text("200")
    expect(actor.locator("td").nth(2)).to_have_text("200")
    payments = preview.locator("tr", has_text="public.payment_p2022_01").locator("td")
    expect(payments.nth(2)).to_have_text(re.compile(r"^0 ! differs$"))

    page.get_by_label(re.compile("to confirm")).fill("not-the-name")
    page.get_by_role("button", name=re.compile("^Restore into")).click()
    expect(page.get_by_role("alert")).to_contain_text("confirmation does not match")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    assert set(cluster.databases()) == before
    assert_same_database(changed, database_fingerprint(cluster, live), names=("changed", "now"))

    page.get_by_label(re.compile("to confirm")).fill(live)
    page.get_by_role("button", name=re.compile("^Restore into")).click()
    expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]+$"))
    expect(page.get_by_role("status")).to_contain_text("Restored", timeout=120_000)
    assert_same_database(original, database_fingerprint(cluster, live))
    kept = page.get_by_role("button", name=re.compile("^Drop "))
    name = (kept.text_content() or "").removeprefix("Drop ").strip()
    assert name.startswith(f"{live}_pre_restore_") and name in cluster.databases()
    kept.click()
    expect(page.get_by_text("The kept database was dropped.")).to_be_visible()
    assert name not in cluster.databases()


def test_retention_preview_names_each_rule_and_backups_page_over_10000(
    dashboard: Dashboard, web: Guarded
) -> None:
    page = web.signed_in(dashboard.users["admin"])
    page.goto("/schedules")
    expect(
        page.get_by_role("cell", name=re.compile("keep the last 2, keep 3 daily"))
    ).to_have_count(1)
    page.goto("/retention?database=archive")
    rows = page.locator("tr[data-backup]")
    expect(rows).to_have_count(30)
    deleted = page.locator("tr[data-backup]", has_text="✕ delete")
    # 30 hourly backups from yesterday 00:00 UTC: kept are the newest two (keep_last), the
    # third newest (minimum_redundancy 3) and yesterday's newest (daily)
    expect(deleted).to_have_count(26)
    for rule in deleted.locator("td.rule").all_text_contents():
        assert rule.startswith("no rule keeps it") and "keep_last 2" in rule, rule
    kept = page.locator("tr[data-backup]", has_text="✓ keep").locator("td.rule")
    rules = kept.all_text_contents()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert len(rules) == 4
    assert sum("minimum_redundancy 3" in r for r in rules) == 3
    assert sum("keep_last 2" in r for r in rules) == 2
    assert [r for r in rules if "minimum_redundancy" not in r] == [f"daily {yesterday}"]

    page.goto("/backups?database=legacy")
    expect(page.get_by_test_id("count")).to_have_text(f"1–50 of {SEEDED} backups")
    expect(page.locator("tbody tr")).to_have_count(50)
    pages = page.get_by_role("navigation", name="Pages")
    pages.get_by_role("link", name="200").click()
    expect(page.get_by_test_id("count")).to_have_text(f"9951–10000 of {SEEDED} backups")
    oldest = dashboard.server.catalog.search_backups(database="legacy", oldest_first=True, limit=1)
    expect(page.locator("tbody tr").last).to_contain_text(oldest[0].id)
    page.get_by_label("Order").select_option("oldest")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tbody tr").first).to_contain_text(oldest[0].id)


PAGES = [
    ("overview", "/"),
    ("backups", "/backups"),
    ("backups-legacy-page-3", "/backups?database=legacy&page=3"),
    ("new-backup", "/backups/new?database=app"),
    ("restore", "/restore"),
    ("jobs", "/jobs"),
    ("schedules", "/schedules"),
    ("retention", "/retention?database=archive"),
    ("storage", "/storage"),
    ("audit", "/audit"),
    ("users", "/users"),
    ("docs", "/docs"),
    ("not-found", "/backups/no-such-backup"),
]


def _shoot(page: Page, shots: Path, name: str) -> None:
    """Screenshots of the page at 1280 and 390 px (the same page resized: no second load);
    at 390 px the page must not scroll sideways. Very long pages are shot to the fold."""
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        tall = page.evaluate("document.documentElement.scrollHeight") > 6000
        page.screenshot(path=str(shots / f"{name}-{viewport['width']}.png"), full_page=not tall)
        if viewport is PHONE:
            assert fits_width(page), f"{name} scrolls sideways at {PHONE['width']} px"
    page.set_viewport_size(DESKTOP)


def test_every_page_at_1280_and_390_with_strict_csp_and_no_outside_request(
    dashboard: Dashboard, web: Guarded, shared_backup: str
) -> None:
    shots = output_dir(ROOT)
    for old in shots.glob("*.png"):
        old.unlink()
    pages = [
        *PAGES,
        ("backup", f"/backups/{shared_backup}"),
        ("delete-confirmation", f"/backups/{shared_backup}/delete"),
        ("restore-preview", f"/restore?backup={shared_backup}&target=app&preview=true"),
    ]
    login = web.context(viewport=DESKTOP).new_page()
    answer = login.goto("/login")
    assert answer is not None
    assert "unsafe-inline" not in script_src(answer.headers["content-security-policy"])
    _shoot(login, shots, "login")
    page = web.signed_in(dashboard.users["owner"], viewport=DESKTOP)
    for name, path in pages:
        answer = page.goto(path)
        assert answer is not None and answer.status in (200, 404), (path, answer.status)
        csp = answer.headers["content-security-policy"]
        assert script_src(csp) == "script-src 'self'", (path, csp)
        assert page.locator("script:not([src])").count() == 0, path
        if name == "docs":
            expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
        _shoot(page, shots, name)
    page.goto("/")
    page.get_by_role("button", name="Back up now").first.click()
    expect(page.get_by_role("status")).to_contain_text("completed", timeout=90_000)
    _shoot(page, shots, "job")
    page.goto("/backups/new?database=app")
    page.get_by_label("Labels").fill("no-equals-sign")
    page.get_by_role("button", name="Start backup").click()
    expect(page.get_by_role("alert")).to_contain_text("is not key=value")
    _shoot(page, shots, "new-backup-refused")
    assert len(list(shots.glob("*.png"))) == 2 * (len(pages) + 3)
