"""Catalog benchmark: every read endpoint and command against catalogs of 1k, 10k and 100k
backups over 100 databases, in SQLite and in PostgreSQL, side by side.

For each engine and size it makes a pgvault home whose config names 100 databases (each
with a schedule and the retention policy the rows were pruned by), fills the catalog with
synthetic rows through the catalog's own API (``Catalog.save_backups``, rows from
``tests/support/catalog_rows.py``), then measures:

* ``pgvault serve`` (the real command: uvicorn and the scheduler, idle) answering each
  endpoint ``--requests`` times over one keep-alive connection: p50/p95/p99/max in ms;
  deep pages by offset (25 offsets spread over the whole list) and a walk of every page
  by cursor (each page timed, the count checked against the rows); the peak RSS of the
  serve process (``VmHWM``) when it is done;
* the CLI, wall time of ``--cli-runs`` runs (median and max): ``--help``, ``--version``,
  ``list``, ``list --database``, ``stats``, ``history``, ``health``, ``prune --dry-run``;
* prune in-process: ``prune.apply(dry_run=True)`` as the CLI's dry run calls it, and with
  ``every_row=True`` (every live row decided one by one);

and, once, ``pgvault catalog rebuild`` from ``--rebuild`` manifests on a moto S3 server.
Results go to ``bench/work/catalog/results-<label>.json`` and are printed as tables, one
column per size. Run with the code to compare on ``PYTHONPATH`` for a "before" figure
(features it lacks are skipped).

    .venv/bin/python bench/bench_catalog.py --sizes 1000,10000,100000 --engines sqlite,postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from benchlib import compile_pgvault  # noqa: E402

from support.catalog_rows import (  # noqa: E402
    POLICY,
    database_names,
    environment_of,
    synthetic_records,
)
from support.pgcluster import PgCluster, embedded_bindir  # noqa: E402
from support.s3server import MotoServer  # noqa: E402

PGVAULT = Path(sys.executable).with_name("pgvault")
DATABASES = 100
SECRET = "bench-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(home: Path, catalog_url: str | None) -> Path:
    """``pgvault.toml``: 100 databases with a daily schedule 12 h away from now (so the idle
    scheduler of ``serve`` runs nothing) and the policy the synthetic rows were pruned by."""
    hour = (datetime.now(UTC).hour + 12) % 24
    lines = [f'home = "{home}"']
    if catalog_url:
        lines.append(f'catalog_url = "{catalog_url}"')
    lines += ["[scheduler]", 'prune_cron = "0 3 1 1 *"', "freshness_check_seconds = 86400"]
    for d, name in enumerate(database_names(DATABASES)):
        lines += [
            f"[databases.{name}]",
            f'url = "postgresql://backup@db.internal:5432/{name}"',
            f'environment = "{environment_of(d)}"',
            f"[databases.{name}.schedules.daily]",
            f'cron = "0 {hour} * * *"',
            f"[databases.{name}.retention]",
            *(f"{k} = {v}" for k, v in POLICY.items()),
        ]
    path = home / "pgvault.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli_env(config: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGVAULT_CONFIG=str(config), PGVAULT_SECRET_KEY=SECRET, COLUMNS="160")
    return env | (extra or {})


def fill(catalog_url: str, size: int) -> dict[str, float]:
    """Write ``size`` synthetic rows through the catalog's API; seconds and rows/s."""
    from pgvault.catalog import Catalog

    catalog = Catalog.open(catalog_url)
    records = synthetic_records(size, DATABASES)
    t0 = time.perf_counter()
    if hasattr(catalog, "save_backups"):
        catalog.save_backups(records)
    else:  # the code before: one transaction per row
        for record in records:
            catalog.add_backup(record)
    seconds = time.perf_counter() - t0
    if catalog.engine.dialect.name == "postgresql":
        with catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does after a bulk load
    catalog.engine.dispose()
    return {"fill_s": seconds, "rows_per_s": size / seconds}


def summary(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of samples in seconds."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000

    return {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": ordered[-1] * 1000}


class Serve:
    """``pgvault serve`` as a child process on a free port; stopped with SIGINT."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(PGVAULT), "serve", "--port", str(self.port)],
            env=cli_env(config),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start; see {log}")
            time.sleep(0.2)

    def cpu(self) -> float:
        """User + system CPU seconds the serve process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> int:
        """``VmHWM`` of the serve process (bytes)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def timed(client: httpx.Client, path: str, runs: int) -> tuple[list[float], Any]:
    """``runs`` timed GETs of ``path`` (after 3 untimed); the seconds and the last body."""
    body: Any = None
    for _ in range(3):
        client.get(path).raise_for_status()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        answer = client.get(path)
        samples.append(time.perf_counter() - t0)
        answer.raise_for_status()
        body = answer.json() if "json" in answer.headers.get("content-type", "") else None
    return samples, body


def measure_api(serve: Serve, token: str, runs: int) -> dict[str, Any]:
    """Every read endpoint, deep offsets and a full cursor walk."""
    found: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=serve.url, headers=headers, timeout=120) as client:
        found["walk"] = walk(client)
        live = found["walk"]["rows"]
        page = "/api/v1/backups?limit=50"
        endpoints = {
            "GET /backups?limit=50": page,
            "GET /backups?limit=50&offset=90%": f"{page}&offset={live * 9 // 10}",
            "GET /backups?limit=50&offset=last page": f"{page}&offset={max(live - 50, 0)}",
            "GET /backups?database=db042&limit=50": f"{page}&database=db042",
            "GET /backups?status=failed&limit=50": f"{page}&status=failed",
            "GET /backups?environment=staging&limit=50": f"{page}&environment=staging",
            "GET /health": "/api/v1/health",
            "GET /databases": "/api/v1/databases",
            "GET /history": "/api/v1/history",
            "GET /stats": "/api/v1/stats",
            "GET /health/backups": "/api/v1/health/backups",
            "GET /metrics": "/metrics",
        }
        for name, path in endpoints.items():
            cpu = serve.cpu()
            samples, _ = timed(client, path, runs)
            per_request = (serve.cpu() - cpu) / (runs + 3) * 1000
            found[name] = summary(samples) | {"cpu_ms": per_request}
        samples = []
        for i in range(25):
            path = f"/api/v1/backups?limit=50&offset={i * max(live - 50, 0) // 24}"
            samples += timed(client, path, max(runs // 25, 2))[0]
        found["GET /backups?limit=50&offset=any (25 depths)"] = summary(samples)
    found["serve_peak_rss_mib"] = serve.peak_rss() / 2**20
    return found


def walk(client: httpx.Client) -> dict[str, Any]:
    """Every page of the default listing, each timed: by cursor, or by offset in a version
    without cursors."""
    samples: list[float] = []
    seen, query, by = 0, "/api/v1/backups?limit=50", "cursor"
    while True:
        t0 = time.perf_counter()
        body = client.get(query).json()
        samples.append(time.perf_counter() - t0)
        seen += len(body["items"])
        if "next_cursor" not in body:
            by = "offset"
            if not body["items"]:
                break
            query = f"/api/v1/backups?limit=50&offset={seen}"
        elif body["next_cursor"]:
            query = f"/api/v1/backups?limit=50&cursor={body['next_cursor']}"
        else:
            break
    return {"pages": len(samples), "rows": seen, "by": by, **summary(samples)}


CLI = {
    "pgvault --help": ["--help"],
    "pgvault --version": ["--version"],
    "pgvault list": ["list"],
    "pgvault list --database db042": ["list", "--database", "db042"],
    "pgvault stats": ["stats"],
    "pgvault history": ["history"],
    "pgvault health": ["health"],
    "pgvault prune --dry-run": ["prune", "--dry-run"],
}


def measure_cli(config: Path, runs: int) -> dict[str, Any]:
    """Wall seconds (median, max) of each command, run ``runs`` times."""
    found: dict[str, Any] = {}
    for name, argv in CLI.items():
        walls, cpus = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            child = subprocess.Popen(
                [str(PGVAULT), *argv],
                env=cli_env(config),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert child.stderr is not None
            error = child.stderr.read()
            _, status, usage = os.wait4(child.pid, 0)
            walls.append(time.perf_counter() - t0)
            cpus.append(usage.ru_utime + usage.ru_stime)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode not in (0, 1):
                raise RuntimeError(f"{name} failed: {error.decode()[-500:]}")
        found[name] = {
            "median_s": statistics.median(walls),
            "max_s": max(walls),
            "cpu_s": statistics.median(cpus),
        }
    return found


def measure_prune(config: Path) -> dict[str, Any]:
    """Prune's decisions in-process: ``prune.apply`` as the CLI's dry run calls it (young
    rows kept by ``max_age_days`` read only as far back as the rules need) and deciding
    every row one by one."""
    from pgvault.catalog import Catalog
    from pgvault.config.settings import load_settings
    from pgvault.operations import prune

    settings = load_settings(config)
    catalog = Catalog.open(settings.catalog_location)
    found: dict[str, Any] = {}
    for label, every_row in (("prune.apply(dry_run)", False), ("... every_row=True", True)):
        t0, c0 = time.perf_counter(), time.process_time()
        report = prune.apply(settings, catalog, dry_run=True, every_row=every_row)
        found[label] = {
            "s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "rows": len(report.items),
            "unlisted": sum(report.unlisted.values()),
            "due": sum(not i.keep for i in report.items),
        }
    catalog.engine.dispose()
    return found


def bench_size(
    engine: str, size: int, args: argparse.Namespace, cluster: PgCluster | None
) -> dict[str, Any]:
    home = args.workdir / f"{engine}-{size}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    url = None
    if engine == "postgresql":
        assert cluster is not None
        name = f"catalog_{size}_{secrets.token_hex(3)}"
        cluster.create_database(name)
        url = cluster.url(name, with_password=True)
    config = write_config(home, url)
    catalog_url = url or f"sqlite:///{home / 'catalog.sqlite3'}"
    result: dict[str, Any] = {"engine": engine, "size": size, **fill(catalog_url, size)}
    print(f"[{engine} {size}] filled in {result['fill_s']:.1f} s", flush=True)
    token = subprocess.run(
        [str(PGVAULT), "tokens", "create", "--name", "bench", "--role", "viewer"],
        env=cli_env(config),
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    serve = Serve(config, home / "serve.log")
    try:
        result["api"] = measure_api(serve, token, args.requests)
    finally:
        serve.stop()
    print(f"[{engine} {size}] api done", flush=True)
    result["cli"] = measure_cli(config, args.cli_runs)
    result["prune"] = measure_prune(config)
    print(f"[{engine} {size}] cli and prune done", flush=True)
    return result


def bench_rebuild(count: int, workdir: Path) -> dict[str, Any]:
    """``pgvault catalog rebuild`` from ``count`` manifests (and objects) on moto S3."""
    moto = MotoServer.start(workdir / "moto")
    try:
        bucket = moto.create_bucket("bench-rebuild")
        client = moto.client()
        records = list(synthetic_records(count, DATABASES))

        def put(record: Any) -> None:
            client.put_object(Bucket=bucket, Key=f"p/{record.storage_key}", Body=b"x")
            body = record.model_dump_json().encode()
            client.put_object(Bucket=bucket, Key=f"p/{record.storage_key}.manifest.json", Body=body)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(put, records))
        print(f"[rebuild] {count} backups uploaded in {time.perf_counter() - t0:.0f} s", flush=True)
        home = workdir / "rebuild"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        config = write_config(home, None)
        env = cli_env(config, moto.aws_env())
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(PGVAULT), "catalog", "rebuild", "--storage", f"s3://{bucket}/p"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - t0
        return {"manifests": count, "rebuild_s": wall, "said": done.stderr.strip()[-200:]}
    finally:
        moto.stop()


def _api_cell(found: dict[str, float]) -> str:
    cpu = f" ({found['cpu_ms']:.1f})" if "cpu_ms" in found else ""
    return f"{found['p50']:.1f} / {found['p99']:.1f}{cpu}"


def _cli_cell(found: dict[str, float]) -> str:
    return f"{found['median_s']:.2f} / {found['max_s']:.2f} ({found['cpu_s']:.2f})"


def _prune_cell(found: dict[str, Any] | None) -> str:
    if found is None:
        return "-"
    cpu = found.get("cpu_s", 0.0)
    unlisted = f" (+{found['unlisted']:,} unlisted)" if found.get("unlisted") else ""
    return f"{found['s']:.2f} ({cpu:.2f}) s, {found['rows']:,} rows{unlisted}, {found['due']} due"


def print_tables(results: list[dict[str, Any]]) -> None:
    for engine in sorted({r["engine"] for r in results}):
        rows = [r for r in results if r["engine"] == engine]
        sizes = [f"{r['size']:,}" for r in rows]
        print(
            f"\n## {engine}: API ms p50 / p99 (serve CPU ms per request); "
            "CLI s median / max (CPU s)\n"
        )
        print("| measurement | " + " | ".join(sizes) + " |")
        print("|---|" + "---:|" * len(rows))
        print("| fill, rows/s | " + " | ".join(f"{r['rows_per_s']:,.0f}" for r in rows) + " |")
        for name in rows[0]["api"]:
            if name in ("walk", "serve_peak_rss_mib"):
                continue
            cells = [_api_cell(r["api"][name]) for r in rows]
            print(f"| `{name}` | " + " | ".join(cells) + " |")

        def walk_cell(w: dict[str, Any]) -> str:
            return f"{w['p50']:.1f} / {w['p99']:.1f} ({w['pages']} pages by {w['by']})"

        print(
            "| every page by cursor | "
            + " | ".join(walk_cell(r["api"]["walk"]) for r in rows)
            + " |"
        )
        print(
            "| serve peak RSS MiB | "
            + " | ".join(f"{r['api']['serve_peak_rss_mib']:.0f}" for r in rows)
            + " |"
        )
        for name in rows[0]["cli"]:
            cells = [_cli_cell(r["cli"][name]) for r in rows]
            print(f"| `{name}` | " + " | ".join(cells) + " |")
        for name in rows[0]["prune"]:
            cells = [_prune_cell(r["prune"].get(name)) for r in rows]
            print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--requests", type=int, default=100, help="Timed requests per endpoint.")
    ap.add_argument("--cli-runs", type=int, default=5)
    ap.add_argument(
        "--rebuild", type=int, default=10000, help="Manifests to rebuild from (0: skip)."
    )
    ap.add_argument("--label", default="after")
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "catalog")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    compile_pgvault()  # the CLI rows start pgvault as an installed one does
    engines = [e for e in args.engines.split(",") if e]
    cluster = None
    if "postgresql" in engines:
        cluster = PgCluster.start(embedded_bindir(), args.workdir / "cluster")
    results: list[dict[str, Any]] = []
    load: Callable[[], str] = lambda: " ".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    out = args.workdir / f"results-{args.label}.json"
    try:
        for engine in engines:
            for size in (int(s) for s in args.sizes.split(",") if s):
                print(f"[{engine} {size}] load average {load()}", flush=True)
                results.append(bench_size(engine, size, args, cluster))
                out.write_text(json.dumps({"results": results}, indent=2))
    finally:
        if cluster is not None:
            cluster.destroy()
    rebuild = bench_rebuild(args.rebuild, args.workdir) if args.rebuild else None
    out.write_text(json.dumps({"results": results, "rebuild": rebuild, "load": load()}, indent=2))
    print_tables(results)
    if rebuild:
        count, wall = rebuild["manifests"], rebuild["rebuild_s"]
        print(f"\n`pgvault catalog rebuild` from {count:,} manifests on moto S3: {wall:.1f} s")
    print(f"\nresults in {out}; load average at the end {load()}")


if __name__ == "__main__":
    main()
