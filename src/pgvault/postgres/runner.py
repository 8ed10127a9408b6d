"""Runs PostgreSQL client tools: argv only, secrets in the environment, output streamed.

A :class:`Child` starts a program in its own process group, logs its stderr line by line as
it arrives (keeping a tail and the error lines for messages), exposes stdout as a stream of
chunks, and on timeout or error terminates, then kills, the whole group and reaps it.
Idea borrowed from Patroni's cancellable subprocess and pglift's async runner.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pgvault.errors import ToolError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # bytes read from a child's stdout at a time
PIPE_SIZE = 1024 * 1024
"""Bytes the pipe of a child's stdout holds (Linux ``F_SETPIPE_SZ``, fcntl(2); the default is
64 KiB and ``/proc/sys/fs/pipe-max-size`` is 1 MiB unless lowered). pg_dump then blocks on a
full pipe and pgvault wakes for its output up to 16 times less often: a 418 MB backup took
3-10 % less wall time on 2 cores in interleaved runs (bench/RESULTS.md). Only stdout is
widened (the measured case): pipe(7)'s per-user quota, ``pipe-user-pages-soft`` (64 MiB),
stays far away even with dozens of tools running at once."""
MAX_ERROR_LINES = 1000


def widen_pipe(pipe: IO[Any], size: int = PIPE_SIZE) -> int:
    """Ask the kernel to let ``pipe`` hold ``size`` bytes; returns the size it holds now
    (bytes), or 0 where that cannot be asked (not Linux) or is refused (a lower
    ``pipe-max-size``, the per-user pipe quota): the pipe then keeps its size. A pipe's size
    changes speed, never behaviour."""
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setter is None:
        return 0
    try:
        return int(fcntl.fcntl(pipe.fileno(), setter, size))
    except OSError:
        return 0


class Child:
    """One running client tool; use as a context manager so it is always reaped.

    Args:
        argv: the command line (see :mod:`pgvault.postgres.commands`); never a secret in it.
        env: the child's whole environment (PGPASSWORD goes here).
        stdin/stdout: ``subprocess.PIPE``, ``subprocess.DEVNULL``, a file object or None.
        timeout: seconds after which the child's process group is killed (None: never).
        on_line: called with each stderr line as it arrives (progress from ``--verbose``).
        run_as: ``(uid, gid)`` to run the child as (root only), e.g. for ``pg_ctl``.

    Raises:
        ToolError: the program does not exist or cannot be started.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        self.name = Path(argv[0]).name
        self._on_line = on_line
        switch: dict[str, Any] = {}
        if run_as is not None:  # (uid, gid): server programs refuse to run as root
            switch = {"user": run_as[0], "group": run_as[1], "extra_groups": []}
        self.tail: deque[str] = deque(maxlen=20)
        self.error_lines: list[str] = []
        self.timed_out = False
        self.killed = False
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                bufsize=0,
                **switch,
            )
        except FileNotFoundError as exc:
            raise ToolError(f"program '{self.name}' not found (looked in {argv[0]})") from exc
        except OSError as exc:
            raise ToolError(f"cannot start {self.name}: {exc.strerror}") from exc
        if self.proc.stdout is not None:
            widen_pipe(self.proc.stdout)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self._timer: threading.Timer | None = None
        if timeout is not None:
            self._timer = threading.Timer(timeout, self._on_timeout)
            self._timer.daemon = True
            self._timer.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            log.debug("%s: %s", self.name, line)
            if self._on_line is not None:
                self._on_line(line)
            self.tail.append(line)
            if ("ERROR:" in line or "error:" in line or "FATAL:" in line) and len(
                self.error_lines
            ) < MAX_ERROR_LINES:
                self.error_lines.append(line)
        self.proc.stderr.close()

    def _on_timeout(self) -> None:
        self.timed_out = True
        log.info("%s ran past its timeout; stopping it", self.name)
        self.kill()

    @property
    def stdin(self) -> IO[bytes]:
        """The child's stdin pipe (only when started with ``stdin=PIPE``)."""
        assert self.proc.stdin is not None
        return self.proc.stdin

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield stdout in chunks of at most ``size`` bytes until EOF."""
        out = self.proc.stdout
        assert out is not None
        while True:
            chunk = out.read(size)
            if not chunk:
                return
            yield chunk

    def kill(self) -> None:
        """Terminate the child's process group, then kill it if still alive after 5 s."""
        if self.proc.poll() is not None:
            return
        self.killed = True
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait(self) -> int:
        """Wait for the child to exit and its stderr to drain; return its exit status."""
        code = self.proc.wait()
        self._stderr_thread.join()
        if self._timer is not None:
            self._timer.cancel()
        for pipe in (self.proc.stdout, self.proc.stdin):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass
        return code

    def message(self) -> str:
        """One line describing why the child failed (its last error line)."""
        if self.timed_out:
            return f"{self.name} was stopped after its timeout"
        lines = self.error_lines or list(self.tail)
        if not lines:
            return f"{self.name} exited with status {self.proc.returncode}"
        return lines[-1]

    def check(self) -> None:
        """Wait, then raise if the child failed.

        Raises:
            ToolError: non-zero exit or timeout, with the last stderr error line.
        """
        if self.wait() != 0 or self.timed_out:
            raise ToolError(self.message())

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.kill()
        self.wait()


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    input_bytes: bytes | None = None,
    run_as: tuple[int, int] | None = None,
) -> str:
    """Run a short command to completion and return its stdout as text.

    Raises:
        ToolError: it could not start, failed, or timed out.
    """
    stdin: int = subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL
    with Child(argv, env=env, stdin=stdin, timeout=timeout, run_as=run_as) as child:
        if input_bytes is not None:
            try:
                child.stdin.write(input_bytes)
            except BrokenPipeError:
                pass
            child.stdin.close()
        out = b"".join(child.chunks())
        child.check()
    return out.decode("utf-8", "replace")
