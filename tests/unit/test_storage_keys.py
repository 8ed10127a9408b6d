"""Storage keys can never escape their target; the local backend writes atomically."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgvault.errors import NotFound, StorageError
from pgvault.storage import validate_key
from pgvault.storage.local import LocalStorage

SAFE_CHARS = "abcXYZ019._-+=@,: "
segment = st.text(alphabet=SAFE_CHARS, min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
segments = st.lists(segment, min_size=1, max_size=6)


@given(before=st.lists(segment, max_size=4), after=st.lists(segment, max_size=4))
def test_a_dotdot_segment_is_refused(before: list[str], after: list[str]) -> None:
    key = "/".join([*before, "..", *after])

    with pytest.raises(StorageError, match="unsafe storage key"):
        validate_key(key)


@given(parts=segments)
def test_a_leading_slash_is_refused(parts: list[str]) -> None:
    with pytest.raises(StorageError, match="unsafe storage key"):
        validate_key("/" + "/".join(parts))


@given(parts=segments)
def test_plain_relative_keys_are_accepted_unchanged(parts: list[str]) -> None:
    key = "/".join(parts)

    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", ".", "a/./b", "a//b", "a/", "a\\..\\b", "a/\x00", "tab\there", "é.dump"]
)
def test_other_unsafe_keys(key: str) -> None:
    with pytest.raises(StorageError):
        validate_key(key)


def test_local_storage_commits_atomically_and_aborts_cleanly(tmp_path: Path) -> None:
    store = LocalStorage(str(tmp_path / "backups"))
    writer = store.open_write("app/2026/x.dump")
    writer.write(b"half")

    assert [i.key for i in store.list()] == []  # only the .partial exists
    assert (tmp_path / "backups/app/2026/x.dump.partial").is_file()
    info = writer.commit()

    assert (info.key, info.size) == ("app/2026/x.dump", 4)
    assert store.read_bytes("app/2026/x.dump") == b"half"
    aborted = store.open_write("app/2026/y.dump")
    aborted.write(b"never")
    aborted.abort()
    assert [i.key for i in store.list()] == ["app/2026/x.dump"]
    assert not list((tmp_path / "backups").rglob("*.partial"))

    store.delete("app/2026/x.dump")

    assert not (tmp_path / "backups/app").exists()  # empty directories pruned
    with pytest.raises(NotFound, match="missing"):
        store.open_read("app/2026/x.dump")
    with pytest.raises(StorageError, match="unsafe"):
        store.open_write("../outside.dump")


def test_a_process_killed_while_checking_writability_leaves_no_file(tmp_path: Path) -> None:
    """check_writable in a loop, SIGKILLed at random moments: nothing is left in the root
    (the probe never has a name there; a named probe was left by one kill in a CI run)."""
    root = tmp_path / "backups"
    loop = (
        "import sys\nfrom pgvault.storage.local import LocalStorage\n"
        f"store = LocalStorage({str(root)!r})\nstore.check_writable()\n"
        "print('ready', flush=True)\nwhile True:\n    store.check_writable()\n"
    )
    for delay in (0.0, 0.01, 0.05, 0.1, 0.2):
        with subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE) as child:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            time.sleep(delay)
            child.kill()
            assert child.wait() == -signal.SIGKILL
        assert sorted(p.name for p in root.iterdir()) == []
