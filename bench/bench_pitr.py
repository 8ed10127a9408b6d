"""Point-in-time recovery benchmark: pgvault versus pgBackRest on one PostgreSQL 15 cluster.

Debian's PostgreSQL 15 server (pgBackRest 2.45, the Debian package, supports it; the script
runs ``apt-get install -y pgbackrest`` when it is missing) with both archives at once:
``archive_command = pgbackrest archive-push`` and ``pgvault wal stream`` (pg_receivewal on a
slot). The database is bench_core's (``pgbench -i -s SCALE`` plus ``docs``). Interleaved
``--runs`` rounds of:

* full physical backup: ``pgbackrest --type=full backup`` (``compress-type=zst``,
  ``process-max=2``) and ``pgvault backup --physical --database bench``;
* restore plus recovery to a time T (taken between two ``pgbench -T`` bursts after the
  backups): ``pgbackrest restore --type=time --target=T --target-action=promote`` then
  ``pg_ctl start`` until the server is promoted and accepts connections, and
  ``pgvault restore --physical --target-time T --into DIR`` (which returns then). Both
  restored clusters must hold the same ``pgbench_history`` row count (untimed check).

Then WAL archive lag under load: ``pgbench -T 60 -c 2`` while the server's WAL position is
compared every 0.5 s with the end of the newest segment in pgvault's archive (in segments).

    .venv/bin/python bench/bench_pitr.py --scale 50 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from benchlib import Procs, Sample, load_bench_db, measure, median_sample, mib  # noqa: E402

from pgvault.catalog import Catalog  # noqa: E402
from pgvault.catalog import physical as rows  # noqa: E402
from pgvault.physical import walnames  # noqa: E402
from support.osuser import ensure_traversable, server_user  # noqa: E402
from support.pgcluster import PgCluster, debian_bindir  # noqa: E402
from support.pitr import BACKUP_PASSWORD, BACKUP_ROLE  # noqa: E402

PIPE = subprocess.PIPE
SEGMENT = 16 * 1024 * 1024
STANZA = "bench"


def ensure_pgbackrest() -> str:
    """The pgbackrest binary, installed from Debian when missing (as root)."""
    found = shutil.which("pgbackrest")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "pgbackrest"], check=True)
        found = shutil.which("pgbackrest")
    if found is None:
        raise SystemExit("pgbackrest could not be installed")
    return found


class PitrBench:
    """The cluster, both tools' configuration, and the samples collected."""

    def __init__(self, work: Path, scale: int) -> None:
        self.work = work
        self.user = server_user()
        self.as_server: dict[str, Any] = dict(self.user.popen_kwargs())
        self.pgbackrest = ensure_pgbackrest()
        self.conf = work / "pgbackrest.conf"
        archive = f"{self.pgbackrest} --config={self.conf} --stanza={STANZA} archive-push %p"
        self.cluster = PgCluster.start(
            debian_bindir(15),
            work / "cluster",
            settings={"archive_mode": "on", "archive_command": archive, "max_wal_size": "4GB"},
        )
        self.samples: dict[str, list[Sample]] = {}
        self.home = work / "pgvault-home"
        self.scale = scale

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        c = self.cluster
        for sub in ("pgbr-repo", "pgbr-log", "pgbr-lock", "pgbr-spool", "restores"):
            path = self.work / sub
            path.mkdir(mode=0o700)
            self.user.give(path)
        self.conf.write_text(
            "[global]\n"
            f"repo1-path={self.work / 'pgbr-repo'}\nrepo1-retention-full=99\n"
            "process-max=2\ncompress-type=zst\ncompress-level=3\nstart-fast=y\n"
            f"log-path={self.work / 'pgbr-log'}\nlock-path={self.work / 'pgbr-lock'}\n"
            f"spool-path={self.work / 'pgbr-spool'}\n"
            "log-level-console=warn\nlog-level-file=info\n"
            f"[{STANZA}]\npg1-path={c.datadir}\npg1-port={c.port}\n"
            f"pg1-socket-path={c.socket_dir}\npg1-user=postgres\n"
        )
        self.conf.chmod(0o644)
        self.backrest("stanza-create")
        c.psql(f"CREATE ROLE {BACKUP_ROLE} LOGIN REPLICATION PASSWORD '{BACKUP_PASSWORD}'")
        t0 = time.monotonic()
        load_bench_db(c, "bench", self.scale)
        size = c.psql("SELECT pg_size_pretty(pg_database_size('bench'))")
        print(f"scale {self.scale}: 'bench' is {size}, loaded in {time.monotonic() - t0:.0f} s")
        self.backrest("check")
        self.home.mkdir()
        secret = self.work / "backup.pass"
        secret.write_text(BACKUP_PASSWORD + "\n")
        secret.chmod(0o600)
        root = f'server_os_user = "{self.user.name}"\n' if os.geteuid() == 0 else ""
        (self.home / "pgvault.toml").write_text(
            root + "[databases.bench]\n"
            f'url = "{c.url("bench", user=BACKUP_ROLE)}"\n'
            f'password_file = "{secret}"\npitr = true\n'
        )
        ensure_traversable(self.work)

    def backrest(self, *args: str) -> str:
        cmd = [self.pgbackrest, f"--config={self.conf}", f"--stanza={STANZA}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, **self.as_server)
        if done.returncode != 0:
            raise RuntimeError(f"pgbackrest {args[-1]} failed: {done.stderr or done.stdout}")
        return done.stdout

    def pgvault(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("pgvault")), *args]

    def pv_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGVAULT_HOME"] = str(self.home)
        return env

    # ------------------------------------------------------------------ steps
    def br_backup(self, p: Procs) -> int:
        cmd = [self.pgbackrest, f"--config={self.conf}", f"--stanza={STANZA}"]
        cmd += ["--type=full", "backup"]
        p.wait(p.start(cmd, stderr=PIPE, stdout=PIPE, **self.as_server), "pgbackrest backup")
        info = json.loads(self.backrest("--output=json", "info"))
        return int(info[0]["backup"][-1]["info"]["repository"]["delta"])

    def pv_backup(self, p: Procs) -> int:
        cmd = self.pgvault("backup", "--physical", "--database", "bench", "--json")
        proc = p.start(cmd, env=self.pv_env(), cwd=self.home, stdout=PIPE, stderr=PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read()
        (self.work / "pgvault-backup.log").write_bytes(proc.stderr.read())
        p.wait(proc, "pgvault backup --physical")
        return int(json.loads(out)["size_bytes"])

    def br_restore(self, target: str, into: Path, port: int) -> Any:
        def step(p: Procs) -> int:
            into.mkdir(mode=0o700)
            self.user.give(into)
            cmd = [self.pgbackrest, f"--config={self.conf}", f"--stanza={STANZA}"]
            cmd += [f"--pg1-path={into}", "--type=time", f"--target={target}"]
            cmd += ["--target-action=promote", "restore"]
            p.wait(p.start(cmd, stderr=PIPE, stdout=PIPE, **self.as_server), "restore")
            ctl = [str(self.cluster.bindir / "pg_ctl"), "start", "-w", "-t", "3600", "-D"]
            opts = f"-c port={port} -c unix_socket_directories={into} -c archive_mode=off"
            ctl += [str(into), "-l", str(into / "recovery.log"), "-o", opts]
            p.wait(p.start(ctl, stderr=PIPE, stdout=PIPE, **self.as_server), "pg_ctl start")
            self.wait_promoted(port)
            return 0

        return step

    def pv_restore(self, target: str, into: Path, port: int) -> Any:
        def step(p: Procs) -> int:
            cmd = self.pgvault("restore", "--physical", "--database", "bench", "--target-time")
            cmd += [target, "--into", str(into), "--port", str(port), "--json"]
            proc = p.start(cmd, env=self.pv_env(), cwd=self.home, stdout=PIPE, stderr=PIPE)
            p.wait(proc, "pgvault restore --physical")
            return 0

        return step

    def query(self, port: int, sql: str) -> str:
        env = {**self.cluster.env(), "PGPORT": str(port)}
        cmd = [str(self.cluster.bindir / "psql"), "-XAtq", "-d", "bench", "-c", sql]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout

    def wait_promoted(self, port: int) -> None:
        while self.query(port, "SELECT pg_is_in_recovery()").strip() != "f":
            time.sleep(0.1)

    def stop(self, into: Path) -> None:
        ctl = [str(self.cluster.bindir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(into)]
        subprocess.run(ctl, capture_output=True, check=False, **self.as_server)
        shutil.rmtree(into, ignore_errors=True)

    def record(self, key: str, step: Any) -> Sample:
        sample = measure(step)
        self.samples.setdefault(key, []).append(sample)
        print(f"  {key:<22} {sample.wall:7.1f} s  cpu {sample.cpu:6.1f} s", flush=True)
        return sample

    # ------------------------------------------------------------------ driver
    def wait_archived(self) -> None:
        """pg_switch_wal, then wait until both archives have the finished segment."""
        name = self.cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
        catalog = Catalog.open(f"sqlite:///{self.home / 'catalog.sqlite3'}")
        try:
            while True:
                pushed = self.cluster.psql("SELECT last_archived_wal FROM pg_stat_archiver")
                streamed = [r.name for r in rows.segments(catalog, database="bench")]
                if pushed >= name and name in streamed:
                    return
                time.sleep(0.2)
        finally:
            catalog.engine.dispose()

    def pgbench(self, seconds: int, clients: int = 2) -> None:
        self.cluster.client("pgbench", "-n", "-T", str(seconds), "-c", str(clients), "bench")

    def run(self, runs: int) -> None:
        with open(self.work / "stream.log", "ab") as log:
            stream = subprocess.Popen(
                self.pgvault("wal", "stream", "--database", "bench"),
                env=self.pv_env(),
                cwd=self.home,
                stderr=log,
                start_new_session=True,
            )
        try:
            time.sleep(3)
            for r in range(runs):
                print(f"backup round {r + 1}/{runs}", flush=True)
                self.record("pgbackrest backup", self.br_backup)
                self.record("pgvault backup", self.pv_backup)
            self.pgbench(10)
            target = self.cluster.psql("SELECT clock_timestamp()")
            time.sleep(0.2)
            self.pgbench(10)
            self.wait_archived()
            expect = self.cluster.psql(
                f"SELECT count(*) FROM pgbench_history WHERE mtime <= '{target}'",  # noqa: S608
                "bench",
            )
            for r in range(runs):
                print(f"restore round {r + 1}/{runs} (to {target})", flush=True)
                for key, make in (
                    ("pgbackrest restore", self.br_restore),
                    ("pgvault restore", self.pv_restore),
                ):
                    into = self.work / "restores" / f"{key.split()[0]}-{r}"
                    port = 20000 + r * 2 + (key.startswith("pgvault"))
                    try:
                        self.record(key + " to T", make(target, into, port))
                        got = self.query(port, "SELECT count(*) FROM pgbench_history").strip()
                        if got != expect:
                            raise RuntimeError(f"{key}: {got} history rows, expected {expect}")
                    finally:
                        self.stop(into)
            self.lag_under_load()
        finally:
            stream.terminate()
            stream.wait(60)

    def lag_under_load(self, seconds: int = 60) -> None:
        catalog = Catalog.open(f"sqlite:///{self.home / 'catalog.sqlite3'}")
        lags: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                lsn = walnames.parse_lsn(self.cluster.psql("SELECT pg_current_wal_lsn()"))
                newest = rows.newest_segment(catalog, "bench")
                assert newest is not None and newest.segment_number is not None
                end = (newest.segment_number + 1) * SEGMENT
                lags.append(max(0, lsn - end) / SEGMENT)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.monotonic()
        before = self.cluster.psql("SELECT pg_current_wal_lsn()")
        self.pgbench(seconds)
        after = self.cluster.psql("SELECT pg_current_wal_lsn()")
        done.set()
        thread.join()
        written = walnames.parse_lsn(after) - walnames.parse_lsn(before)
        rate = written / (time.monotonic() - t0) / 2**20
        self.lag = (max(lags), sorted(lags)[len(lags) // 2], rate, len(lags))
        catalog.engine.dispose()

    def report(self) -> None:
        med = {k: median_sample(v) for k, v in self.samples.items()}
        print("\n| | wall s | × | CPU s | RSS max MiB | RSS tree MiB | stored MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for key, ref in (
            ("pgbackrest backup", "pgbackrest backup"),
            ("pgvault backup", "pgbackrest backup"),
            ("pgbackrest restore to T", "pgbackrest restore to T"),
            ("pgvault restore to T", "pgbackrest restore to T"),
        ):
            s = med[key]
            ratio = s.wall / med[ref].wall
            size = mib(s.size) if s.size else "–"
            print(
                f"| {key} | {s.wall:.1f} | {ratio:.2f} | {s.cpu:.1f} | "
                f"{mib(s.rss_max_single)} | {mib(s.rss_tree_peak)} | {size} |"
            )
        worst, median, rate, count = self.lag
        print(
            f"\nWAL lag under pgbench -T 60 -c 2 ({rate:.1f} MiB/s of WAL, {count} samples): "
            f"max {worst:.2f} segments, median {median:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=int, default=50, help="pgbench scale (default 50)")
    ap.add_argument("--runs", type=int, default=3, help="rounds, medians reported (default 3)")
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "pitr")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if not (debian_bindir(15) / "postgres").exists():
        raise SystemExit("needs Debian's PostgreSQL 15 server (apt-get install postgresql-15)")
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    ensure_traversable(args.workdir)
    bench = PitrBench(args.workdir, args.scale)
    try:
        bench.setup()
        bench.run(args.runs)
        bench.report()
    finally:
        bench.cluster.destroy()
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
