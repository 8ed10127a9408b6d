"""``give_tree`` (the chown of a recovery's data directory to the server's OS user) goes on
when files come and go under it: the WAL spool is written, partial files renamed into place,
while the tree is given. A writer thread does exactly that during many walks; no walk may
fail and every file left in the end belongs to the account.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pgvault.physical.cluster import give_tree


def test_files_renamed_while_the_tree_is_given_are_skipped(tmp_path: Path) -> None:
    spool = tmp_path / "cluster" / "pgvault_restore_wal" / "ready"
    spool.mkdir(parents=True)
    for n in range(200):
        (tmp_path / "cluster" / f"base-{n}").write_bytes(b"x")
    account = (os.getuid(), os.getgid())
    stop = threading.Event()

    def write_segments() -> None:
        n = 0
        while not stop.is_set():
            partial = spool / f"{n:024X}.pgvault-partial"
            partial.write_bytes(b"wal")
            partial.rename(spool / f"{n:024X}")
            (spool / f"{n:024X}").unlink()
            n += 1

    writer = threading.Thread(target=write_segments)
    writer.start()
    try:
        for _ in range(150):
            give_tree(tmp_path / "cluster", account)
    finally:
        stop.set()
        writer.join()
    give_tree(tmp_path / "cluster", account)
    assert all(p.lstat().st_uid == account[0] for p in (tmp_path / "cluster").rglob("*"))
