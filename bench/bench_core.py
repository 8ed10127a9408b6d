"""Core benchmark: raw pg_dump/pg_restore versus ``pgvault backup``/``pgvault restore``.

Builds a pgbench database (``pgbench -i -s SCALE`` plus a ``docs`` table of 16,000 × SCALE
rows of text and jsonb) in a throwaway PostgreSQL 18 cluster under ``bench/work/core``,
then measures, interleaved, ``--runs`` rounds of:

* backup: raw ``pg_dump -Fc -f FILE`` (the reference), the floor ``pg_dump -Fc -Z0 >
  /dev/null``, and ``pgvault backup URL --json`` (local storage, defaults);
* restore into a database that does not exist yet: raw ``pg_restore -j2 -d target FILE``
  (reference; ``target`` is created empty just before, untimed) and ``pgvault restore ID
  --to URL --no-safety-backup --yes``;
* with ``--s3`` (default on): the same ``pgvault backup``/``restore`` with the storage target
  ``s3://bench/pgvault`` on a local moto S3 server over HTTP (issue 3's S3 path).

Medians of wall time, CPU time, peak RSS (largest single process and summed tree) and
output size are printed with ratios against the raw tool. See ``bench/README.md``.

    .venv/bin/python bench/bench_core.py --scale 50 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from benchlib import Procs, Sample, load_bench_db, measure, median_sample, mib  # noqa: E402

from support.pgcluster import PgCluster, embedded_bindir  # noqa: E402
from support.s3server import MotoServer  # noqa: E402

PIPE = subprocess.PIPE
CHECK_SQL = "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM docs)"


def pgvault_cmd() -> list[str] | None:
    """The pgvault CLI next to this interpreter (or on PATH), if it runs; else None."""
    exe = Path(sys.executable).parent / "pgvault"
    found = str(exe) if exe.exists() else shutil.which("pgvault")
    if found is None:
        return None
    try:
        ok = subprocess.run([found, "--help"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [found] if ok.returncode == 0 else None


class Bench:
    """One cluster, the commands to measure, and the samples collected."""

    def __init__(
        self, cluster: PgCluster, work: Path, jobs: int, s3: MotoServer | None = None
    ) -> None:
        self.c = cluster
        self.s3 = s3
        self.work = work
        self.jobs = jobs
        self.bindir = cluster.bindir
        self.env = cluster.env()
        self.dump = work / "raw.dump"
        self.home = work / "pgvault-home"
        self.pv_env = dict(self.env, PGVAULT_HOME=str(self.home))
        self.pv_env.pop("PGDATABASE", None)
        self.pgvault = pgvault_cmd()
        self.pv_error = "" if self.pgvault else "pgvault not available"
        self.last_backup_id: str | None = None
        self.last_s3_backup_id: str | None = None
        self.s3_env = dict(self.pv_env, **(s3.aws_env() if s3 else {}))
        self.samples: dict[str, list[Sample]] = {}

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def url(self, db: str) -> str:
        return self.c.url(db)  # no password: it is in PGPASSWORD

    # ---------------------------------------------------------------- steps
    def raw_dump(self, p: Procs) -> int:
        cmd = [self.tool("pg_dump"), "-Fc", "-f", str(self.dump), "bench"]
        p.wait(p.start(cmd, env=self.env, stderr=PIPE), "pg_dump")
        return self.dump.stat().st_size

    def floor_dump(self, p: Procs) -> int:
        cmd = [self.tool("pg_dump"), "-Fc", "-Z0", "bench"]
        p.wait(p.start(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=PIPE), "pg_dump")
        return 0

    def pv_backup(self, p: Procs) -> int:
        assert self.pgvault is not None
        cmd = [*self.pgvault, "backup", self.url("bench"), "--json"]
        proc = p.start(cmd, env=self.pv_env, stdout=PIPE, stderr=PIPE)
        assert proc.stdout is not None
        out = proc.stdout.read()
        p.wait(proc, "pgvault backup")
        record = json.loads(out)
        self.last_backup_id = str(record["id"])
        return int(record["size_bytes"])

    def pv_backup_s3(self, p: Procs) -> int:
        assert self.pgvault is not None
        cmd = [*self.pgvault, "backup", self.url("bench"), "--json"]
        cmd += ["--storage", "s3://bench/pgvault"]
        proc = p.start(cmd, env=self.s3_env, stdout=PIPE, stderr=PIPE)
        assert proc.stdout is not None
        out = proc.stdout.read()
        p.wait(proc, "pgvault backup (s3)")
        record = json.loads(out)
        self.last_s3_backup_id = str(record["id"])
        return int(record["size_bytes"])

    def pv_restore_s3(self, p: Procs) -> int:
        assert self.pgvault is not None and self.last_s3_backup_id is not None
        cmd = [*self.pgvault, "restore", self.last_s3_backup_id, "--to", self.url("target")]
        cmd += ["--no-safety-backup", "--yes"]
        p.wait(p.start(cmd, env=self.s3_env, stdout=PIPE, stderr=PIPE), "pgvault restore (s3)")
        return 0

    def raw_restore(self, p: Procs) -> int:
        cmd = [self.tool("pg_restore"), f"-j{self.jobs}", "-d", "target", str(self.dump)]
        p.wait(p.start(cmd, env=self.env, stderr=PIPE), "pg_restore")
        return 0

    def pv_restore(self, p: Procs) -> int:
        assert self.pgvault is not None and self.last_backup_id is not None
        cmd = [*self.pgvault, "restore", self.last_backup_id, "--to", self.url("target")]
        cmd += ["--no-safety-backup", "--yes"]
        p.wait(p.start(cmd, env=self.pv_env, stdout=PIPE, stderr=PIPE), "pgvault restore")
        return 0

    # ---------------------------------------------------------------- driver
    def run_one(self, key: str, step: Callable[[Procs], int]) -> Sample | None:
        try:
            s = measure(step)
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            if not key.startswith("pgvault"):
                raise
            self.pgvault = None
            self.pv_error = f"pgvault not available ({str(e).strip()[-400:]})"
            print(self.pv_error, flush=True)
            return None
        self.samples.setdefault(key, []).append(s)
        print(f"  {key:<16} {s.wall:7.1f} s  cpu {s.cpu:6.1f} s", flush=True)
        return s

    def fresh_target(self, create: bool) -> None:
        self.c.drop_database("target")
        if create:
            self.c.create_database("target")

    def check_target(self, expect: str, key: str) -> None:
        got = self.c.psql(CHECK_SQL, "target")
        if got != expect:
            raise RuntimeError(f"{key}: restored counts {got} != source {expect}")

    def run(self, runs: int) -> None:
        expect = self.c.psql(CHECK_SQL, "bench")
        for r in range(runs):
            print(f"backup round {r + 1}/{runs}", flush=True)
            self.run_one("pg_dump -Fc", self.raw_dump)
            self.run_one("floor -Z0", self.floor_dump)
            if self.pgvault:
                self.run_one("pgvault backup", self.pv_backup)
            if self.pgvault and self.s3:
                self.run_one("pgvault bk s3", self.pv_backup_s3)
        for r in range(runs):
            print(f"restore round {r + 1}/{runs}", flush=True)
            self.fresh_target(create=True)
            self.run_one(f"pg_restore -j{self.jobs}", self.raw_restore)
            self.check_target(expect, "pg_restore")
            if self.pgvault and self.last_backup_id:
                self.fresh_target(create=False)
                if self.run_one("pgvault restore", self.pv_restore):
                    self.check_target(expect, "pgvault restore")
            if self.pgvault and self.last_s3_backup_id:
                self.fresh_target(create=False)
                if self.run_one("pgvault rs s3", self.pv_restore_s3):
                    self.check_target(expect, "pgvault restore (s3)")
        self.c.drop_database("target")

    def report(self) -> None:
        med = {k: median_sample(v) for k, v in self.samples.items()}
        ref_of = {
            "pg_dump -Fc": "pg_dump -Fc",
            "floor -Z0": "pg_dump -Fc",
            "pgvault backup": "pg_dump -Fc",
            "pgvault restore": f"pg_restore -j{self.jobs}",
            "pgvault bk s3": "pg_dump -Fc",
            "pgvault rs s3": f"pg_restore -j{self.jobs}",
            f"pg_restore -j{self.jobs}": f"pg_restore -j{self.jobs}",
        }
        head = (
            f"{'':<16} {'wall s':>7} {'×':>5} {'CPU s':>7} {'×':>5} "
            f"{'RSS max MiB':>11} {'RSS tree MiB':>12} {'size MiB':>9} {'×':>5}"
        )
        print()
        print(head)
        for k, m in med.items():
            ref = med.get(ref_of.get(k, ""))

            def ratio(a: float, b: float | None) -> str:
                return f"{a / b:5.2f}" if b else f"{'-':>5}"

            size = mib(m.size) if m.size else "-"
            print(
                f"{k:<16} {m.wall:7.1f} {ratio(m.wall, ref and ref.wall)} {m.cpu:7.1f} "
                f"{ratio(m.cpu, ref and ref.cpu)} {mib(m.rss_max_single):>11} "
                f"{mib(m.rss_tree_peak):>12} {size:>9} "
                f"{ratio(m.size, ref and ref.size) if m.size else '-':>5}"
            )
        if not self.pgvault and self.pv_error:
            print(self.pv_error)
        print(
            "\nwall/CPU: medians; CPU = user+sys of the command and all its descendants "
            "(wait4 rusage; server backends not included).\nRSS max = largest peak RSS "
            "(VmHWM) of any single process in the command's tree; RSS tree = peak of the "
            "summed RSS of the whole tree (polled every 20 ms)."
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=int, default=50, help="pgbench scale (default 50)")
    ap.add_argument("--runs", type=int, default=3, help="rounds, medians reported (default 3)")
    ap.add_argument("--jobs", type=int, default=2, help="pg_restore -j for the raw side")
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "core")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-s3", dest="s3", action="store_false", help="skip the S3 (moto) rows")
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    cluster = PgCluster.start(embedded_bindir(), args.workdir / "cluster")
    s3 = MotoServer.start(args.workdir) if args.s3 else None
    if s3 is not None:
        s3.create_bucket("bench")
    try:
        t0 = time.monotonic()
        load_bench_db(cluster, "bench", args.scale)
        size = cluster.psql("SELECT pg_size_pretty(pg_database_size('bench'))")
        took = time.monotonic() - t0
        print(f"scale {args.scale}: database 'bench' is {size}, loaded in {took:.0f} s")
        bench = Bench(cluster, args.workdir, args.jobs, s3)
        if bench.pgvault is None:
            print(bench.pv_error)
        bench.run(args.runs)
        bench.report()
    finally:
        if s3 is not None:
            s3.stop()
        cluster.destroy()
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
