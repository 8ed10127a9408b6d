"""File snapshot benchmark: ``pgvault files snapshot`` versus ``rclone sync`` and
``aws s3 sync``, side by side in one run, on the same local moto S3 server.

The source bucket holds ``--objects`` objects of 4-512 KiB (uniform; 60% PNG-like random
bytes, stored as is, and 40% text, zstd-compressed by pgvault) plus ``--big`` objects of
8 MiB (random). Every tool copies the whole bucket to local disk with its defaults:

* ``rclone sync src:BUCKET DIR`` (Debian's rclone; 4 transfers, 8 checkers),
* ``aws s3 sync s3://BUCKET DIR`` (Debian's awscli v2; 10 concurrent requests),
* ``pgvault files snapshot bench --json`` into a fresh local storage target (8 workers):
  every object read, sha256-named, deduplicated, compressed unless already compressed, with
  its manifest, index and catalog row (the catalog exists: ``pgvault files list`` ran
  before, untimed, as on any installed pgvault; and pgvault's modules are byte-compiled
  first, as ``pip install`` does, since an editable install under
  ``PYTHONDONTWRITEBYTECODE`` would otherwise compile them on every run);

then each runs again with nothing changed (``pgvault`` compares the listing with the
previous manifest). Rounds are interleaved (each round runs every command once) and
medians are reported: wall seconds, CPU seconds of the command's process tree, the largest
peak RSS of any single process (VmHWM) and of the summed tree, as ``bench/README.md``
describes. rclone and awscli are installed with ``apt-get`` when missing.

    .venv/bin/python bench/bench_files.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from benchlib import Procs, Sample, compile_pgvault, measure, median_sample, mib  # noqa: E402

from support.s3server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
BUCKET = "bench-src"
RCLONE = Path("/usr/bin/rclone")
AWS = Path("/usr/bin/aws")
PIPE = subprocess.PIPE


def ensure_tools() -> None:
    """Install Debian's rclone and awscli when missing (needs root and apt)."""
    if RCLONE.exists() and AWS.exists():
        return
    print("installing rclone and awscli (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "rclone", "awscli"], check=True, env=env)


def fill(moto: MotoServer, objects: int, big: int, seed: int = 2026) -> tuple[int, int]:
    """Create the source bucket; returns ``(objects, bytes)`` put."""
    rng = random.Random(seed)
    client = moto.client()
    client.create_bucket(Bucket=BUCKET)
    line = b"2026-11-21 05:30:12 user=42 action=upload path=/srv/app/users/42/a.png ok\n"
    bodies: list[tuple[str, bytes, str]] = []
    for i in range(objects):
        size = rng.randint(4 * KiB, 512 * KiB)
        if rng.random() < 0.6:
            data = (b"\x89PNG\r\n\x1a\n" + rng.randbytes(size))[:size]
            bodies.append((f"users/{i % 97}/image {i:05d}.png", data, "image/png"))
        else:
            data = (line * (size // len(line) + 1))[:size]
            bodies.append((f"logs/{i % 13}/entry-{i:05d}.txt", data, "text/plain"))
    for i in range(big):
        bodies.append((f"videos/clip-{i:02d}.mp4", rng.randbytes(8 * MiB), "video/mp4"))

    def put(item: tuple[str, bytes, str]) -> int:
        key, data, kind = item
        client.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType=kind)
        return len(data)

    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(put, bodies))
    client.close()
    return len(bodies), total


def tool_env(moto: MotoServer) -> dict[str, str]:
    """Environment for the three tools: moto's endpoint and dummy keys, rclone's remote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "RCLONE_"))}
    env.update(moto.aws_env())
    env.update(
        {
            "RCLONE_CONFIG_SRC_TYPE": "s3",
            "RCLONE_CONFIG_SRC_PROVIDER": "Other",
            "RCLONE_CONFIG_SRC_ENDPOINT": moto.endpoint_url,
            "RCLONE_CONFIG_SRC_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "RCLONE_CONFIG_SRC_REGION": REGION,
            "RCLONE_CONFIG_SRC_FORCE_PATH_STYLE": "true",
        }
    )
    return env


def pgvault_exe() -> str:
    exe = Path(sys.executable).parent / "pgvault"
    if not exe.exists():
        raise SystemExit("pgvault is not installed next to this interpreter")
    return str(exe)


class Bench:
    """The commands of one run, each measured with :func:`benchlib.measure`."""

    def __init__(self, workdir: Path, moto: MotoServer, expected: int) -> None:
        self.workdir = workdir
        self.env = tool_env(moto)
        self.endpoint = moto.endpoint_url
        self.expected = expected
        self.pgvault = pgvault_exe()

    def _run(self, argv: list[str], env: dict[str, str]) -> Callable[[Procs], int]:
        def step(procs: Procs) -> int:
            p = procs.start(argv, env=env, stdout=PIPE, stderr=PIPE)
            out = p.stdout.read() if p.stdout else b""
            procs.wait(p, argv[0])
            self.last_output = out
            return 0

        return step

    def rclone(self, target: Path) -> Sample:
        return measure(self._run([str(RCLONE), "sync", f"src:{BUCKET}", str(target)], self.env))

    def aws(self, target: Path) -> Sample:
        argv = [str(AWS), "s3", "sync", f"s3://{BUCKET}", str(target), "--endpoint-url"]
        return measure(self._run([*argv, self.endpoint, "--only-show-errors"], self.env))

    def pgvault_home(self, home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        (home / "pgvault.toml").write_text(f'[files.bench]\nsource = "s3://{BUCKET}"\n')
        return {**self.env, "PGVAULT_HOME": str(home), "PGVAULT_CONFIG": str(home / "pgvault.toml")}

    def install(self, home: Path) -> None:
        """An installed pgvault: its home and catalog exist (``files list``, untimed)."""
        env = self.pgvault_home(home)
        argv = [self.pgvault, "files", "list", "--json"]
        subprocess.run(argv, env=env, check=True, capture_output=True)

    def snapshot(self, home: Path) -> tuple[Sample, dict[str, Any]]:
        argv = [self.pgvault, "files", "snapshot", "bench", "--json"]
        sample = measure(self._run(argv, self.pgvault_home(home)))
        result: dict[str, Any] = json.loads(self.last_output)
        if result["objects"] != self.expected:
            raise SystemExit(f"pgvault snapshot has {result['objects']} objects: {result}")
        sample.size = int(result["bytes"])
        return sample, result


def files_in(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> None:
    ensure_tools()
    compile_pgvault()
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    moto = MotoServer.start(workdir / "moto")
    try:
        count, total = fill(moto, args.objects, args.big)
        print(f"source: {count} objects, {total / MiB:.0f} MiB on moto {moto.endpoint_url}")
        bench = Bench(workdir, moto, count)
        rows: dict[str, list[Sample]] = {}
        copied: list[int] = []
        for n in range(args.runs):
            base = workdir / f"round{n}"
            for name, target, fn in (
                ("rclone sync", base / "rclone", bench.rclone),
                ("aws s3 sync", base / "aws", bench.aws),
            ):
                rows.setdefault(name, []).append(fn(target))
                if files_in(target) != count:
                    raise SystemExit(f"{name} copied {files_in(target)} of {count} objects")
            bench.install(base / "pgvault")
            first, result = bench.snapshot(base / "pgvault")
            rows.setdefault("pgvault files snapshot", []).append(first)
            again, second = bench.snapshot(base / "pgvault")
            copied.append(int(second["copied_objects"]))
            rows.setdefault("pgvault snapshot, no change", []).append(again)
            rows.setdefault("rclone sync, no change", []).append(bench.rclone(base / "rclone"))
            rows.setdefault("aws s3 sync, no change", []).append(bench.aws(base / "aws"))
            print(
                f"round {n + 1}: rclone {rows['rclone sync'][-1].wall:.2f} s, "
                f"aws {rows['aws s3 sync'][-1].wall:.2f} s, pgvault {first.wall:.2f} s "
                f"(again {again.wall:.2f} s, {second['copied_objects']} read)",
                flush=True,
            )
            shutil.rmtree(base)
        report(rows, count, total, args, copied)
    finally:
        moto.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(
    rows: dict[str, list[Sample]],
    count: int,
    total: int,
    args: argparse.Namespace,
    copied: list[int],
) -> None:
    med = {name: median_sample(samples) for name, samples in rows.items()}
    ref = med["rclone sync"].wall
    first = med["pgvault files snapshot"].wall
    print()
    print(f"{count} objects, {total / MiB:.0f} MiB, medians of {args.runs} interleaved rounds")
    print("| command | wall s | × rclone | CPU s | RSS max MiB | RSS tree MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in med.items():
        print(
            f"| {name} | {s.wall:.2f} | {s.wall / ref:.2f} | {s.cpu:.2f} | "
            f"{mib(s.rss_max_single)} | {mib(s.rss_tree_peak)} |"
        )
    again = med["pgvault snapshot, no change"]
    rss = med["pgvault files snapshot"].rss_max_single
    print()
    print(f"first snapshot / rclone sync: {first / ref:.2f} (target <= 1.0)")
    print(f"no-change snapshot / first snapshot: {again.wall / first:.2f} (target <= 0.2)")
    print(f"pgvault peak RSS: {mib(rss)} MiB (target <= 150 MB = {150e6 / MiB:.0f} MiB)")
    print(f"objects read by the no-change snapshots: {copied}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--objects", type=int, default=2000, help="objects of 4-512 KiB")
    parser.add_argument("--big", type=int, default=10, help="objects of 8 MiB")
    parser.add_argument("--workdir", type=Path, default=HERE / "work" / "files")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
