"""Real pgvault processes to SIGKILL, many per second: a child that imports pgvault once
and then forks one process per run (a backup or a restore), so the crash trials kill real
processes at random points without paying the interpreter's start each time.

Protocol on the child's stdin/stdout, one JSON object per line: ``{"run": "backup" |
"restore", ...}`` answers ``{"pid": N}`` (the forked process running it); ``{"wait": N}``
answers ``{"pid": N, "status": S}`` once it ended (``S`` < 0: killed by signal ``-S``).
A forked restore may carry ``"kill_at": STEP`` for the journal's test-only kill point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _run(request: dict[str, Any]) -> None:
    """In the forked process: do the run, then leave without any cleanup of the parent's."""
    from pgvault import backups, databases, restores
    from pgvault.catalog import Catalog
    from pgvault.config.settings import load_settings
    from pgvault.restores import journal

    settings = load_settings(home=Path(request["home"]))
    catalog = Catalog.open(settings.catalog_location)
    target = databases.from_url(settings, request["url"])
    if request["run"] == "backup":
        backups.create(
            settings,
            catalog,
            backups.BackupRequest(
                target=target,
                dump_format=request.get("dump_format", "custom"),
                with_globals=False,
            ),
        )
    else:
        journal._KILL_AT = request.get("kill_at")  # the test-only kill point
        restores.restore(
            settings,
            catalog,
            restores.RestoreRequest(
                target=target,
                backup_id=request["backup_id"],
                confirm=target.conn.dbname,
                safety_backup=False,
            ),
        )


def serve() -> None:
    """The child's loop (``python -m support.forker``)."""
    import pgvault.backups  # noqa: F401 - imported once, before any fork
    import pgvault.restores  # noqa: F401
    from pgvault.postgres import tools

    for program in tools.PROGRAMS:  # versions probed once, not in every fork
        for found in tools.discover(program):
            if program == "pg_dump":
                tools.supports_compression(found, "zstd")

    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            _pid, status = os.waitpid(int(request["wait"]), 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            answer: dict[str, Any] = {"pid": request["wait"], "status": code}
        else:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _run(request)
                except BaseException:  # noqa: BLE001 - the run's failure is its exit status
                    code = 1
                os._exit(code)
            answer = {"pid": pid}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class Forker:
    """The test's end of the forking child."""

    def __init__(self, env: dict[str, str]) -> None:
        tests = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "support.forker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=tests,
            env={**env, "PYTHONPATH": str(tests)},
            text=True,
        )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return answer

    def start(self, **request: Any) -> int:
        """Fork a run; returns its pid."""
        return int(self._ask(request)["pid"])

    def wait(self, pid: int) -> int:
        """Wait for a run to end; its status (negative: the signal that ended it)."""
        return int(self._ask({"wait": pid})["status"])

    def close(self) -> None:
        """End the forking child."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


if __name__ == "__main__":
    serve()
