"""Serving WAL to a recovering server: fetched ahead, in parallel, through a spool.

The recovering server's ``restore_command`` is a small shell script (written here) that
asks for one file by appending its name to ``requests`` and waits for pgvault to answer
with ``ready/<name>`` (copied to ``%p``), ``absent/<name>`` (not archived: the normal end
of the archive, or a history file that does not exist) or ``missing/<name>`` (archived or
expected but unreadable: deleted from storage, corrupt, or a gap). Meanwhile pgvault fetches
the next segments ahead with a few threads, as pgBackRest's asynchronous ``archive-get``
does, so recovery rarely waits for storage.

If the pgvault process dies or stops serving, the script exits 200: PostgreSQL
treats an exit status above 125 as fatal and stops instead of promoting at a random point
(PostgreSQL docs, "Recovering Using a Continuous Archive Backup").
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pgvault.catalog.physical import WalSegmentRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import PgvaultError
from pgvault.physical import archive as wal_archive
from pgvault.physical import walnames

log = logging.getLogger(__name__)

WORKERS = 4
WINDOW = 16  # segments fetched ahead of the newest one asked for
POLL_SECONDS = 0.05
_DONE: Future[None] = Future()
_DONE.set_result(None)

SCRIPT = """#!/bin/sh
# restore_command of a pgvault point-in-time restore: serves the WAL that pgvault
# (pid {pid}) fetches ahead from the archive. Usage: fetch.sh %f %p
d={spool}
f="$1"
case "$f" in *[!0-9A-Za-z.]*|'') exit 1;; esac
printf '%s\n' "$f" >> "$d/requests" || exit 1
while :; do
  if [ -f "$d/ready/$f" ]; then exec cp "$d/ready/$f" "$2"; fi
  if [ -f "$d/absent/$f" ] || [ -f "$d/missing/$f" ]; then exit 1; fi
  if [ ! -d /proc/{pid} ] || [ -f "$d/stopped" ] || [ ! -d "$d/ready" ]; then exit 200; fi
  sleep 0.05
done
"""


@dataclass
class Missing:
    """A WAL file recovery asked for that the archive should have had but could not give."""

    name: str
    reason: str


@dataclass
class WalServer:
    """Answers one recovering server's requests for WAL files; :meth:`start`, :meth:`stop`.

    Args:
        known: the archived files of the cluster, by name (segments and history files).
        first: the first segment recovery needs (the base backup's start).
        account: ``(uid, gid)`` owning the spool when pgvault runs as root.
    """

    settings: Settings
    known: Mapping[str, WalSegmentRecord]
    first: walnames.Segment
    segment_size: int
    spool: Path
    decrypt: DecryptHook | None
    account: tuple[int, int] | None = None
    missing: list[Missing] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="wal-fetch")
        self._jobs: dict[str, Future[None]] = {}
        self._answered: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="wal-server", daemon=True)
        self._numbers: dict[int, list[int]] = {}
        for record in self.known.values():
            if record.segment_number is not None:
                self._numbers.setdefault(record.timeline, []).append(record.segment_number)
        for numbers in self._numbers.values():
            numbers.sort()

    @property
    def script(self) -> Path:
        """The restore_command script."""
        return self.spool / "fetch.sh"

    def restore_command(self) -> str:
        """The ``restore_command`` value: ``'<spool>/fetch.sh' %f %p``."""
        return f"{shlex.quote(str(self.script))} %f %p"

    def start(self) -> None:
        """Create the spool and its script, start fetching ahead and answering."""
        for sub in ("", "ready", "absent", "missing"):
            path = self.spool / sub
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._give(path)
        self.script.write_text(SCRIPT.format(pid=os.getpid(), spool=shlex.quote(str(self.spool))))
        self.script.chmod(0o700)
        self._give(self.script)
        (self.spool / "requests").write_text("")
        self._give(self.spool / "requests")
        self._ahead(self.first)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and fetching (files already fetched stay until the spool goes)."""
        self._stop.set()
        if self.spool.is_dir():
            (self.spool / "stopped").write_text("")
        if self._thread.ident is not None:
            self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _give(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, *self.account)

    def _loop(self) -> None:
        offset = 0
        while not self._stop.wait(POLL_SECONDS):
            try:
                with open(self.spool / "requests", "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1
            offset += cut
            for name in data[:cut].decode("ascii", "replace").split():
                if name not in self._answered:
                    self._answer(name)
                elif (
                    name in self.known
                    and not self._served(name)
                    and self._jobs.get(name, _DONE).done()
                ):
                    self.requested.append(name)
                    self._fetch(name)  # asked again after its copy was pruned

    def _served(self, name: str) -> bool:
        return any((self.spool / kind / name).exists() for kind in ("ready", "absent", "missing"))

    def _answer(self, name: str) -> None:
        self._answered.add(name)
        self.requested.append(name)
        if walnames.is_segment(name):
            segment = walnames.parse_segment(name, self.segment_size)
            self._prune(segment)
            self._ahead(segment)
        if name in self._jobs:
            return  # fetched or being fetched; its job answers
        if name in self.known:
            self._fetch(name)
            return
        reason = self._gap_reason(name)
        if reason is not None:
            self._mark("missing", name, reason)
        else:
            self._mark("absent", name, "not archived")

    def _gap_reason(self, name: str) -> str | None:
        """Why a segment not in the archive was expected there (archived ones around it)."""
        if not walnames.is_segment(name):
            return None
        segment = walnames.parse_segment(name, self.segment_size)
        numbers = self._numbers.get(segment.timeline, [])
        if numbers and numbers[0] < segment.number < numbers[-1]:
            return "never archived (a gap in the archive)"
        return None

    def _ahead(self, segment: walnames.Segment) -> None:
        for step in range(WINDOW + 1):
            name = walnames.Segment(segment.timeline, segment.number + step).name(self.segment_size)
            if name in self.known and name not in self._jobs:
                self._fetch(name)

    def _fetch(self, name: str) -> None:
        self._jobs[name] = self._pool.submit(self._download, name)

    def _download(self, name: str) -> None:
        if self._stop.is_set():
            return
        ready = self.spool / "ready" / name
        try:
            wal_archive.fetch_to(self.settings, self.known[name], ready, self.decrypt)
            self._give(ready)
        except PgvaultError as exc:
            self._mark("missing", name, str(exc))

    def _mark(self, kind: str, name: str, reason: str) -> None:
        path = self.spool / kind / name
        path.write_text(reason + "\n")
        self._give(path)
        if kind == "missing":
            log.warning("WAL file %s is missing: %s", name, reason)
            self.missing.append(Missing(name, reason))

    def _prune(self, segment: walnames.Segment) -> None:
        """Remove fetched segments recovery has moved past (keeps the last two)."""
        for path in (self.spool / "ready").iterdir():
            if not walnames.is_segment(path.name):
                continue
            old = walnames.parse_segment(path.name, self.segment_size)
            if old.timeline == segment.timeline and old.number < segment.number - 1:
                path.unlink(missing_ok=True)

    def missing_requested(self) -> Missing | None:
        """The first file recovery asked for and the archive could not give, if any."""
        asked = set(self.requested)
        return next((m for m in self.missing if m.name in asked), None)
