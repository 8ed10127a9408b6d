"""Start a throwaway PG18 cluster, load the benchmark database, keep it up until told to stop.

Used for the Part 1 exploratory measurements (``bench/part1.py``): the load is done once,
then measurement scripts connect using ``bench/work/part1/conn.json``. Create the file
``bench/work/part1/STOP`` (or send SIGTERM) to stop the cluster and delete its files.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from benchlib import load_bench_db  # noqa: E402

from support.pgcluster import PgCluster, embedded_bindir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=HERE / "work" / "part1")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    stop_file = args.workdir / "STOP"
    stop_file.unlink(missing_ok=True)
    cluster = PgCluster.start(embedded_bindir(), args.workdir / "cluster")
    stopping = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        t0 = time.monotonic()
        load_bench_db(cluster, "bench", args.scale)
        print(f"loaded in {time.monotonic() - t0:.1f}s", flush=True)
        info = {"port": cluster.port, "password": cluster.password, "bindir": str(cluster.bindir)}
        conn = args.workdir / "conn.json"
        conn.write_text(json.dumps(info))
        conn.chmod(0o600)
        while not stopping and not stop_file.exists():
            time.sleep(1)
    finally:
        cluster.destroy()
        print("cluster destroyed", flush=True)


if __name__ == "__main__":
    main()
