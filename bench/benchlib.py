"""Shared helpers for the benchmark scripts: database load and process measurement."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

DOCS_ROWS_PER_SCALE = 16_000  # 800k rows at scale 50
DOCS_SQL = """
CREATE TABLE docs AS SELECT g AS id,
  md5(g::text) || repeat(' lorem ipsum', 20) AS body,
  jsonb_build_object('n', g, 'tags', jsonb_build_array(md5(g::text), g % 97)) AS meta
  FROM generate_series(1, ROWS) g;
ALTER TABLE docs ADD PRIMARY KEY (id);
CREATE INDEX docs_meta_n ON docs (((meta->>'n')::int));
VACUUM ANALYZE;
"""


def load_bench_db(cluster: Any, dbname: str, scale: int) -> None:
    """Create ``dbname``: ``pgbench -i -s scale`` (normal, logged tables) plus ``docs``.

    ``docs`` has ``16000 * scale`` rows of text and jsonb (800k rows at scale 50; about
    1.2 GB in total with the pgbench tables at that scale).
    """
    cluster.create_database(dbname)
    cluster.client("pgbench", "-i", "-q", "-s", str(scale), dbname)
    rows = DOCS_ROWS_PER_SCALE * scale
    cluster.psql(DOCS_SQL.replace("ROWS", str(int(rows))), dbname)


@dataclass
class Sample:
    """One measured run: wall and CPU seconds, peak RSS (bytes), output size (bytes)."""

    wall: float
    cpu: float  # user+sys of this process's waited-for children + in-process Python work
    rss_max_single: int  # largest VmHWM of any one process in the tree (polled)
    rss_tree_peak: int  # peak of the summed RSS of the process tree (psutil polling)
    size: int = 0
    ru_maxrss: int = 0  # wait4 ru_maxrss (max single process; inflated, see README)


def _vm_hwm(pid: int) -> int:
    """``VmHWM`` of ``pid`` in bytes (peak RSS of its current program), 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeSampler:
    """Poll the summed RSS of a set of process trees (incl. ourselves) every ``interval`` s."""

    def __init__(self, interval: float = 0.02, include_self: bool = False) -> None:
        self.interval = interval
        self.include_self = include_self
        self.roots: list[psutil.Process] = []
        self.peak = 0
        self.hwm: dict[int, int] = {}  # pid -> last seen VmHWM (peak RSS of its program)
        self.self_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, pid: int) -> None:
        try:
            self.roots.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass

    def _sum(self) -> int:
        total = 0
        procs: list[psutil.Process] = []
        if self.include_self:
            procs.append(psutil.Process(os.getpid()))
        for root in self.roots:
            procs.append(root)
            try:
                procs.extend(root.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        for p in procs:
            try:
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            total += rss
            if p.pid == os.getpid():
                self.self_peak = max(self.self_peak, rss)
            else:
                hwm = _vm_hwm(p.pid)
                if hwm:
                    self.hwm[p.pid] = max(self.hwm.get(p.pid, 0), hwm)
        return total

    @property
    def max_single(self) -> int:
        """Largest peak RSS of any one process (VmHWM; our own sampled RSS if included)."""
        return max([self.self_peak, *self.hwm.values()])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sum())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Procs:
    """Children started by one measured step; waited for with ``os.wait4`` for rusage."""

    sampler: TreeSampler
    cpu: float = 0.0
    maxrss: int = 0
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(list(cmd), **kw)
        self.popens.append(p)
        self.sampler.add(p.pid)
        return p

    def wait(self, p: subprocess.Popen[bytes], what: str = "") -> int:
        """Reap ``p`` with wait4; add its rusage (incl. its reaped descendants)."""
        _pid, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.cpu += ru.ru_utime + ru.ru_stime
        self.maxrss = max(self.maxrss, ru.ru_maxrss * 1024)
        if p.returncode != 0:
            err = p.stderr.read().decode(errors="replace")[-2000:] if p.stderr else ""
            raise RuntimeError(f"{what or p.args} exited {p.returncode}: {err}")
        return p.returncode


def measure(step: Callable[[Procs], int], *, in_process: bool = False) -> Sample:
    """Run ``step(procs)`` (which starts and waits for its children, returns output size).

    ``in_process``: the step also does Python work in this process (a hash/compress loop);
    then its CPU (our own rusage delta) and our own RSS count too.
    """
    self0 = os.times()
    with TreeSampler(include_self=in_process) as sampler:
        procs = Procs(sampler)
        t0 = time.monotonic()
        size = step(procs)
        wall = time.monotonic() - t0
    self1 = os.times()
    cpu = procs.cpu
    if in_process:
        cpu += (self1.user - self0.user) + (self1.system - self0.system)
    return Sample(wall, cpu, sampler.max_single, sampler.peak, size, procs.maxrss)


def median_sample(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.wall for s in samples),
        statistics.median(s.cpu for s in samples),
        int(statistics.median(s.rss_max_single for s in samples)),
        int(statistics.median(s.rss_tree_peak for s in samples)),
        int(statistics.median(s.size for s in samples)),
        int(statistics.median(s.ru_maxrss for s in samples)),
    )


def path_size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def compile_pgvault() -> None:
    """Byte-compile pgvault's modules (``__pycache__``) before measuring, as a wheel install
    (``pip install``) does: an editable install under ``PYTHONDONTWRITEBYTECODE`` would
    otherwise compile every module it imports on every run."""
    import compileall

    import pgvault

    compileall.compile_dir(str(Path(pgvault.__file__).parent), quiet=1)
