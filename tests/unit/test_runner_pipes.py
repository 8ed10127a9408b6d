"""The pipe of a client tool's stdout holds 1 MiB (Linux), so pg_dump blocks less often."""

from __future__ import annotations

import fcntl
import subprocess
import sys

import pytest

from pgvault.postgres import runner
from pgvault.postgres.runner import Child

pytestmark = pytest.mark.skipif(
    not hasattr(fcntl, "F_SETPIPE_SZ"), reason="pipe sizes are set on Linux only"
)

WRITE_ALL = (
    "import os, sys; data = b'x' * int(sys.argv[1]); view = memoryview(data)\n"
    "while view: view = view[os.write(1, view):]\n"
)


def test_a_child_writes_a_whole_pipe_of_output_before_anyone_reads() -> None:
    size = runner.PIPE_SIZE
    argv = [sys.executable, "-c", WRITE_ALL, str(size)]
    with Child(argv) as child:
        # With the default 64 KiB pipe the child would block here until its output is read.
        assert child.proc.wait(timeout=30) == 0
        got = b"".join(child.chunks())
    assert len(got) == size


def test_the_stdout_pipe_is_widened_and_stdin_is_not() -> None:
    with Child(["cat"], stdin=subprocess.PIPE) as child:
        assert child.proc.stdout is not None
        get = getattr(fcntl, "F_GETPIPE_SZ", 1032)
        assert fcntl.fcntl(child.proc.stdout.fileno(), get) == runner.PIPE_SIZE
        assert fcntl.fcntl(child.stdin.fileno(), get) < runner.PIPE_SIZE
        child.stdin.write(b"ok")
        child.stdin.close()
        assert b"".join(child.chunks()) == b"ok"
        child.check()
