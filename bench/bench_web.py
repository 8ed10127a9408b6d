"""Dashboard benchmark: how long each page of the web dashboard takes with 10,000 backups in
the catalog, served by a real ``pgvault serve`` (one process: API, pages, scheduler).

Builds a throwaway PostgreSQL 18 cluster under ``bench/work/web`` with Pagila as the
configured database ``app`` (two real backups: the backup page and the restore preview are
real), seeds 10,000 completed backup rows spread over ``app``, ``billing`` and ``crm`` (the
two others are configured but do not exist: their pages never connect to them), signs in
through the form, then requests every page ``--runs`` times after ``--warmup`` untimed
requests and prints p50, p95 and max in milliseconds (client-side wall time of the whole
HTTP request on 127.0.0.1, keep-alive connection). The goal: every page under 200 ms and a
page of the backups list (p95) under 100 ms.

    .venv/bin/python bench/bench_web.py --runs 30 [--catalog postgresql]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from pgvault import backups, databases  # noqa: E402
from support.pgcluster import PgCluster, embedded_bindir  # noqa: E402
from support.webserver import PASSWORD, WebServer, seed_backups  # noqa: E402

BACKUPS = 10_000
PAGE_GOAL_MS = 200.0
LIST_GOAL_MS = 100.0


def _pages(backup_id: str) -> list[tuple[str, str]]:
    return [
        ("overview", "/"),
        ("backups, page 1", "/backups"),
        ("backups, page 100", "/backups?page=100"),
        ("backups, last page", "/backups?page=200"),
        ("backups, oldest first", "/backups?order=oldest&page=2"),
        (
            "backups, 4 filters",
            "/backups?database=crm&status=completed&trigger=scheduled&label=seeded%3Dyes",
        ),
        ("backup detail", f"/backups/{backup_id}"),
        ("new backup (table list)", "/backups/new?database=app"),
        ("restore: choose", "/restore"),
        ("restore: preview", f"/restore?backup={backup_id}&target=app&preview=true"),
        ("jobs", "/jobs"),
        ("schedules and retention", "/schedules"),
        ("retention preview (3,334 rows)", "/retention?database=crm"),
        ("storage targets", "/storage"),
        ("audit log", "/audit"),
        ("users and tokens", "/users"),
        ("API docs", "/docs"),
    ]


def _sign_in(client: httpx.Client, username: str) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, "no CSRF token on the sign-in page"
    done = client.post(
        "/login", data={"csrf": token.group(1), "username": username, "password": PASSWORD}
    )
    assert done.status_code == 303, done.text[:300]


def _measure(client: httpx.Client, path: str, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        client.get(path)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--catalog", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workdir", type=Path, default=HERE / "work" / "web")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    cluster = PgCluster.start(embedded_bindir(), args.workdir / "pg")
    server = None
    try:
        cluster.load_pagila("app")
        config: dict[str, object] = {
            "scheduler": {"prune_cron": ""},
            "databases": {
                "app": {
                    "url": cluster.url("app", with_password=True),
                    "retention": {"keep_last": 30},
                },
                "billing": {"url": cluster.url("billing_missing", with_password=True)},
                "crm": {
                    "url": cluster.url("crm_missing", with_password=True),
                    "retention": {"keep_last": 10, "keep_daily": 7, "keep_monthly": 12},
                    "schedules": {"nightly": {"cron": "0 2 * * *", "timezone": "Asia/Kolkata"}},
                },
            },
        }
        if args.catalog == "postgresql":
            cluster.create_database("catalog")
            config["catalog_url"] = cluster.url("catalog", with_password=True)
        server = WebServer.start(args.workdir / "home", config, {})
        per = BACKUPS // 3
        seed_backups(server.catalog, "app", BACKUPS - 2 * per - 2)
        seed_backups(server.catalog, "billing", per)
        seed_backups(server.catalog, "crm", per)
        target = databases.from_config(server.settings, "app")
        for _ in range(2):
            request = backups.BackupRequest(target=target, created_by="bench")
            newest = backups.create(server.settings, server.catalog, request)
        total = server.catalog.count_backups()
        owner = server.user("owner")
        print(
            f"catalog {args.catalog}: {total} backups; {os.cpu_count()} cores; load average "
            f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; {args.runs} runs per page"
        )
        print("\n| page | p50 ms | p95 ms | max ms | goal |\n|---|---:|---:|---:|---|")
        worst = 0.0
        with httpx.Client(base_url=server.url, timeout=60) as client:
            _sign_in(client, owner)
            for name, path in _pages(newest.id):
                times = sorted(_measure(client, path, args.runs, args.warmup))
                p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
                goal = LIST_GOAL_MS if name.startswith("backups,") else PAGE_GOAL_MS
                mark = "ok" if p95 < goal else "OVER"
                worst = max(worst, p95)
                print(
                    f"| {name} | {statistics.median(times):.0f} | {p95:.0f} | {times[-1]:.0f} "
                    f"| < {goal:.0f} {mark} |"
                )
            with httpx.Client(base_url=server.url, timeout=60) as anonymous:
                times = sorted(_measure(anonymous, "/login", args.runs, args.warmup))
                p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
                print(
                    f"| sign-in form | {statistics.median(times):.0f} | {p95:.0f} | "
                    f"{times[-1]:.0f} | < {PAGE_GOAL_MS:.0f} |"
                )
        print(f"\nworst p95: {worst:.0f} ms")
    finally:
        if server is not None:
            server.stop()
        cluster.destroy()
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
