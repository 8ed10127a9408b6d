"""A real S3 API over HTTP for tests: ``moto`` in server mode, as a child process.

:class:`MotoServer` runs ``python -m moto.server`` on 127.0.0.1 with a free port, waits until
it answers HTTP, and stops it (terminate, then kill, always reaped). Nothing is patched in
the test process: clients talk to it through sockets exactly as they would to AWS.

Clients made by :meth:`MotoServer.client` carry the dummy credentials explicitly; code under
test finds the server through the standard AWS environment (``AWS_ENDPOINT_URL`` and the
variables of :meth:`MotoServer.aws_env`), set per test with ``monkeypatch``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY_ID = "testing"
# Distinctive, so tests can assert it never shows in an error message or a log line.
SECRET_ACCESS_KEY = "pgvault-test-secret-3b7f0c"  # noqa: S105
REGION = "us-east-1"
START_TIMEOUT = 30.0  # seconds until the server must answer
STOP_TIMEOUT = 10.0  # seconds after SIGTERM before SIGKILL


class MotoServerError(RuntimeError):
    """The moto server did not start (the message has its log tail)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(eq=False)
class MotoServer:
    """A running moto server; build it with :meth:`start`, end it with :meth:`stop`.

    Attributes: ``port`` (TCP on 127.0.0.1), ``log_path`` (its stdout and stderr).
    """

    port: int
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server process we started is alive."""
        return self._proc is not None and self._proc.poll() is None

    @classmethod
    def start(cls, workdir: Path, env: dict[str, str] | None = None) -> MotoServer:
        """Start a server logging to ``workdir/moto.log``; return once it answers HTTP.

        Args:
            env: extra environment for the server, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT`` (moto
                checks IAM credentials and policies after that many requests).

        Raises:
            MotoServerError: it exited or did not answer within ``START_TIMEOUT`` seconds
                (after 3 attempts on fresh ports).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            server = cls(_free_port(), workdir / "moto.log")
            try:
                server._launch(env or {})
                return server
            except MotoServerError as exc:
                last_error = str(exc)
        raise MotoServerError(last_error)

    def _launch(self, extra_env: dict[str, str]) -> None:
        env = {**os.environ, **self.aws_env(), **extra_env}
        env.pop("AWS_ENDPOINT_URL", None)
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise MotoServerError(f"moto server exited at start:\n{self._log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise MotoServerError(
            f"moto server did not answer in {START_TIMEOUT} s:\n{self._log_tail()}"
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 (a fixed http URL of our own)
                f"{self.endpoint_url}/moto-api/", timeout=1
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server (SIGTERM, SIGKILL after ``STOP_TIMEOUT`` s) and reap it.

        Idempotent; in-flight requests see their connection reset.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a paused server must see its SIGTERM
            except ProcessLookupError:
                pass
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            proc.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, but nothing is ever answered."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def aws_env(self) -> dict[str, str]:
        """The AWS variables that point the standard credential/endpoint chain at this server.

        Also isolates the chain from the machine: no profile, no shared config files, no
        instance metadata lookups.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server, with explicit dummy credentials (no env)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (default: a fresh ``pgv-<hex>`` name); return its name."""
        name = name or f"pgv-{secrets.token_hex(6)}"
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def open_uploads(self, bucket: str) -> list[dict[str, Any]]:
        """The bucket's multipart uploads that are neither completed nor aborted."""
        client = self.client()
        try:
            uploads: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=bucket).get(
                "Uploads", []
            )
        finally:
            client.close()
        return uploads

    def wait_for_parts(self, bucket: str, key: str, count: int, timeout: float = 20.0) -> None:
        """Wait until the open upload of ``key`` holds ``count`` stored parts (a writer sends
        parts from a thread, so a ``write`` may return before its part is stored).

        Raises:
            MotoServerError: not so within ``timeout`` seconds.
        """
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                for upload in self.open_uploads(bucket):
                    if upload["Key"] == key:
                        listed = client.list_parts(
                            Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                        )
                        if len(listed.get("Parts", [])) >= count:
                            return
                if time.monotonic() > deadline:
                    raise MotoServerError(f"{key}: fewer than {count} parts after {timeout} s")
                time.sleep(0.02)
        finally:
            client.close()

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
