"""Part 1: which stored form meets the targets (exploratory; needs ``hold_cluster.py`` up).

Backups (interleaved, ``--runs`` rounds): a raw ``pg_dump -Fc -f``; b floor ``-Fc -Z0 >
/dev/null``; c3/c0 ``-Fc -Z0 | python zstd(level 3, threads -1 / 0) + sha256 -> file``;
d ``-Fd -j2 -Z gzip:1`` + Python tar stream with sha256; e ``-Fc -Z gzip:1 | python sha256
-> file``. Restores into a fresh database each time: r1 ``pg_restore -j2`` of a; r2 zstd
stream of c3 into serial ``pg_restore`` (stdin); r3 c3 decompressed to a temp file then
``pg_restore -j2``; r4 d untarred then ``pg_restore -j2`` of the dir; r5 ``pg_restore -j2``
of e (a custom archive written to a pipe: no data offsets).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import Procs, Sample, measure, median_sample, mib, path_size  # noqa: E402

CHUNK = 1 << 20
WORK = HERE / "work" / "part1"
OUT = WORK / "out"


class HashWriter:
    """File-like sink: sha256 + write to ``f``."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.f.write(b)
        return len(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of step names to run")
    ap.add_argument("--skip-backup", action="store_true")
    ap.add_argument("--db", default="bench", help="source database (default bench)")
    args = ap.parse_args()
    conn = json.loads((WORK / "conn.json").read_text())
    bindir = Path(conn["bindir"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST="127.0.0.1",
        PGPORT=str(conn["port"]),
        PGUSER="postgres",
        PGPASSWORD=conn["password"],
        PGDATABASE="postgres",
    )
    pg_dump, pg_restore, psql = (str(bindir / t) for t in ("pg_dump", "pg_restore", "psql"))
    OUT.mkdir(parents=True, exist_ok=True)
    pipe = subprocess.PIPE

    def sql(q: str, db: str = "postgres") -> str:
        return subprocess.run(
            [psql, "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", q],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    # ---------------------------------------------------------------- backups
    def b_a(p: Procs) -> int:
        f = OUT / "a.dump"
        p.wait(p.start([pg_dump, "-Fc", "-f", str(f), args.db], env=env, stderr=pipe))
        return path_size(f)

    def b_b(p: Procs) -> int:
        cmd = [pg_dump, "-Fc", "-Z0", args.db]
        p.wait(p.start(cmd, env=env, stdout=subprocess.DEVNULL, stderr=pipe))
        return 0

    def zstd_loop(threads: int, name: str) -> Callable[[Procs], int]:
        def step(p: Procs) -> int:
            f = OUT / name
            cmd = [pg_dump, "-Fc", "-Z0", args.db]
            proc = p.start(cmd, env=env, stdout=pipe, stderr=pipe)
            assert proc.stdout is not None
            co = zstandard.ZstdCompressor(level=3, threads=threads).compressobj()
            h = hashlib.sha256()
            with f.open("wb") as out:
                while chunk := proc.stdout.read(CHUNK):
                    z = co.compress(chunk)
                    if z:
                        h.update(z)
                        out.write(z)
                z = co.flush()
                h.update(z)
                out.write(z)
            p.wait(proc)
            return path_size(f)

        return step

    def b_d(p: Procs) -> int:
        d = OUT / "d.dir"
        shutil.rmtree(d, ignore_errors=True)
        cmd = [pg_dump, "-Fd", "-j2", "-Z", "gzip:1", "-f", str(d), args.db]
        p.wait(p.start(cmd, env=env, stderr=pipe))
        f = OUT / "d.tar"
        with f.open("wb") as raw:
            hw = HashWriter(raw)
            with tarfile.open(fileobj=hw, mode="w|", bufsize=CHUNK) as tar:  # type: ignore[call-overload]
                names = sorted(os.listdir(d), key=lambda n: (n != "toc.dat", n))
                for n in names:
                    tar.add(str(d / n), arcname=n)
        shutil.rmtree(d)
        return path_size(f)

    def b_e(p: Procs) -> int:
        f = OUT / "e.dump"
        cmd = [pg_dump, "-Fc", "-Z", "gzip:1", args.db]
        proc = p.start(cmd, env=env, stdout=pipe, stderr=pipe)
        assert proc.stdout is not None
        with f.open("wb") as raw:
            hw = HashWriter(raw)
            while chunk := proc.stdout.read(CHUNK):
                hw.write(chunk)
        p.wait(proc)
        return path_size(f)

    def b_b2(p: Procs) -> int:
        d = OUT / "b2.dir"
        shutil.rmtree(d, ignore_errors=True)
        p.wait(p.start([pg_dump, "-Fd", "-j2", "-Z0", "-f", str(d), args.db], env=env, stderr=pipe))
        size = path_size(d)
        shutil.rmtree(d)
        return size

    backups: list[tuple[str, str, Callable[[Procs], int], bool]] = [
        ("a", "pg_dump -Fc -f (default gzip)", b_a, False),
        ("b", "floor: pg_dump -Fc -Z0 > /dev/null", b_b, False),
        ("b2", "parallel floor: pg_dump -Fd -j2 -Z0 -f dir", b_b2, False),
        ("c3", "pg_dump -Fc -Z0 | py zstd-3 threads=-1 + sha256", zstd_loop(-1, "c3.zst"), True),
        ("c0", "pg_dump -Fc -Z0 | py zstd-3 threads=0 + sha256", zstd_loop(0, "c0.zst"), True),
        ("d", "pg_dump -Fd -j2 -Z gzip:1 + py tar + sha256", b_d, True),
        ("e", "pg_dump -Fc -Z gzip:1 | py sha256 -> file", b_e, True),
    ]

    # ---------------------------------------------------------------- restores
    def r1(p: Procs, db: str) -> int:
        cmd = [pg_restore, "-j2", "-d", db, str(OUT / "a.dump")]
        p.wait(p.start(cmd, env=env, stderr=pipe))
        return 0

    def r2(p: Procs, db: str) -> int:
        proc = p.start([pg_restore, "-d", db], env=env, stdin=pipe, stderr=pipe)
        assert proc.stdin is not None
        dctx = zstandard.ZstdDecompressor()
        with (OUT / "c3.zst").open("rb") as f, dctx.stream_reader(f) as r:
            while chunk := r.read(CHUNK):
                proc.stdin.write(chunk)
        proc.stdin.close()
        p.wait(proc)
        return 0

    def r3(p: Procs, db: str) -> int:
        tmp = OUT / "r3.dump"
        dctx = zstandard.ZstdDecompressor()
        with (OUT / "c3.zst").open("rb") as f, tmp.open("wb") as o:
            dctx.copy_stream(f, o, read_size=CHUNK, write_size=CHUNK)
        try:
            p.wait(p.start([pg_restore, "-j2", "-d", db, str(tmp)], env=env, stderr=pipe))
        finally:
            tmp.unlink()
        return 0

    def r4(p: Procs, db: str) -> int:
        tmp = OUT / "r4.dir"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(OUT / "d.tar", mode="r|", bufsize=CHUNK) as tar:
            tar.extractall(tmp, filter="data")
        try:
            p.wait(p.start([pg_restore, "-j2", "-d", db, str(tmp)], env=env, stderr=pipe))
        finally:
            shutil.rmtree(tmp)
        return 0

    def r5(p: Procs, db: str) -> int:
        cmd = [pg_restore, "-j2", "-d", db, str(OUT / "e.dump")]
        p.wait(p.start(cmd, env=env, stderr=pipe))
        return 0

    restores: list[tuple[str, str, Callable[[Procs, str], int], bool]] = [
        ("r1", "pg_restore -j2 of a", r1, False),
        ("r2", "c3: py zstd stream | serial pg_restore (stdin)", r2, True),
        ("r3", "c3: decompress to temp file, pg_restore -j2", r3, True),
        ("r4", "d: untar to temp dir, pg_restore -j2 dir", r4, True),
        ("r5", "e (custom via pipe, no offsets): pg_restore -j2", r5, False),
    ]
    only = set(filter(None, args.only.split(",")))
    if only:
        backups = [b for b in backups if b[0] in only]
        restores = [r for r in restores if r[0] in only]
    if args.skip_backup:
        backups = []

    results: dict[str, list[Sample]] = {}
    check = "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM docs)"
    expect = sql(check, args.db) if restores else ""
    t_start = time.monotonic()
    for run in range(args.runs):
        for key, _label, fn, inproc in backups:
            s = measure(fn, in_process=inproc)
            results.setdefault(key, []).append(s)
            print(
                f"run {run} {key}: {s.wall:.1f}s cpu {s.cpu:.1f}s size {mib(s.size)} MiB",
                flush=True,
            )
    for run in range(args.runs):
        for key, _label, rfn, inproc in restores:
            db = f"restore_{key}"
            sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            sql(f"CREATE DATABASE {db}")
            s = measure(lambda p, rfn=rfn, db=db: rfn(p, db), in_process=inproc)
            got = sql(
                "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM docs)", db
            )
            ok = "ok" if got == expect else f"MISMATCH {got} != {expect}"
            sql(f"DROP DATABASE {db} WITH (FORCE)")
            results.setdefault(key, []).append(s)
            print(f"run {run} {key}: {s.wall:.1f}s cpu {s.cpu:.1f}s {ok}", flush=True)
    print(f"total {time.monotonic() - t_start:.0f}s")

    labels = {k: lbl for k, lbl, *_ in backups + restores}  # type: ignore[operator]
    med = {k: median_sample(v) for k, v in results.items()}
    raw_json = {k: [vars(s) for s in v] for k, v in results.items()}
    (WORK / "results.json").write_text(json.dumps({"runs": raw_json, "labels": labels}, indent=1))
    hdr = f"| {'step':<4} | {'what':<50} | wall s | ×ref | CPU s | ×ref | "
    hdr += "max RSS MiB | tree RSS MiB | ru_maxrss MiB | size MiB |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for k, m in med.items():
        ref = med.get("a" if not k.startswith("r") else "r1")
        rw = f"{m.wall / ref.wall:.2f}" if ref else "-"
        rc = f"{m.cpu / ref.cpu:.2f}" if ref and ref.cpu else "-"
        size = mib(m.size) if m.size else "-"
        print(
            f"| {k:<4} | {labels[k]:<50} | {m.wall:6.1f} | {rw} | {m.cpu:5.1f} | {rc} |"
            f" {mib(m.rss_max_single):>11} | {mib(m.rss_tree_peak):>12} |"
            f" {mib(m.ru_maxrss):>13} | {size:>8} |"
        )


if __name__ == "__main__":
    main()
