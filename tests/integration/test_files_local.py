"""File snapshots of a local directory through the ``pgvault`` CLI: a round trip keeps
contents, modes and modification times; restores delete nothing without --delete-extra and
take a safety snapshot before overwriting or deleting; encrypted snapshots need the
identity; retention sweeps only unreferenced blobs; verify finds damage."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage
import pytest

from pgvault import runtime
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.settings import Settings, load_settings
from pgvault.dumps.encryption import Decryptor
from pgvault.errors import VerifyError
from pgvault.files import restore, verify
from pgvault.files.snapshot import SnapshotRequest, snapshot
from pgvault.operations import file_retention as retention
from support.filesets import set_mtime, toml_str, tree, write_config
from support.vault import Vault, error_line

MTIME = 1_700_000_000_123_456_789


def _source(root: Path) -> Path:
    src = root / "uploads"
    (src / "users/42").mkdir(parents=True)
    (src / "users/42/avatar é.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3000))
    (src / "users/42/notes.txt").write_text("hello\n" * 500)
    (src / "empty").write_bytes(b"")
    (src / "a-b").write_text("sorts before a/")
    (src / "a").mkdir()
    (src / "a/c.json").write_text('{"x": 1}')
    (src / "cache").mkdir()
    (src / "cache/thumb.bin").write_bytes(b"excluded")
    (src / "report.tmp").write_text("excluded")
    os.symlink("/etc/passwd", src / "link")
    os.chmod(src / "users/42/notes.txt", 0o600)
    os.chmod(src / "a/c.json", 0o700)
    for path in src.rglob("*"):
        if path.is_file() and not path.is_symlink():
            set_mtime(path, MTIME)
    return src


def _config(vault: Vault, src: Path, *, extra: str = "", storage: str = "") -> Settings:
    path = write_config(
        vault.home,
        f"""
[files.up]
source = {toml_str(str(src))}
exclude = ["*.tmp", "cache/**"]
{storage}
{extra}
""",
    )
    return load_settings(path, home=vault.home)


def _json(done: object) -> dict[str, object]:
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    return json.loads(done.stdout)  # type: ignore[attr-defined, no-any-return]


def _expected(src: Path) -> dict[str, tuple[str, int, int]]:
    return {
        k: v for k, v in tree(src).items() if not k.startswith("cache/") and not k.endswith(".tmp")
    }


def test_directory_round_trip_keeps_modes_and_times(vault: Vault, tmp_path: Path) -> None:
    src = _source(tmp_path)
    settings = _config(vault, src)
    first = _json(vault.cli("files", "snapshot", "up", "--json"))
    assert set(first) == {
        "id",
        "file_set",
        "objects",
        "bytes",
        "copied_objects",
        "copied_bytes",
        "duration_seconds",
    }
    assert first["objects"] == first["copied_objects"] == 5  # no link, no cache, no .tmp
    again = snapshot(settings, vault.reopen_catalog(), SnapshotRequest(file_set="up"))
    assert again.objects == 5 and again.copied_objects == 0 and again.copied_bytes == 0

    out = tmp_path / "restored"
    done = _json(
        vault.cli("files", "restore", str(first["id"]), "--to", str(out), "--yes", "--json")
    )
    assert done["restored_objects"] == 5 and done["deleted_extra"] == 0
    assert done["safety_snapshot_id"] is None  # nothing was there to lose
    assert tree(out) == _expected(src)  # sha256, mode and mtime_ns of every file
    assert oct(tree(out)["a/c.json"][1]) == "0o700"

    listed = rows.list_snapshots(vault.catalog, file_set="up")
    assert [r.id for r in listed] == [again.id, first["id"]]
    assert verify.verify(settings, vault.catalog, str(first["id"]), full=True).content_checked == 5


def test_restore_deletes_nothing_unless_asked_and_keeps_a_safety_snapshot(
    vault: Vault, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    settings = _config(vault, src)
    snap = snapshot(settings, vault.catalog, SnapshotRequest(file_set="up"))
    original = _expected(src)
    (src / "users/42/notes.txt").write_text("changed by the app")
    (src / "users/42/new upload.png").write_bytes(b"\x89PNG\r\n\x1a\nnew")

    plan = vault.cli("files", "restore", snap.id, "--dry-run", "--delete-extra")
    assert plan.returncode == 0, plan.stderr
    assert "1 to change" in plan.stderr and "1 to delete" in plan.stderr
    assert "safety snapshot first: yes" in plan.stderr
    assert "change  users/42/notes.txt" in plan.stdout
    assert "delete  users/42/new upload.png" in plan.stdout
    assert (src / "users/42/new upload.png").exists()  # a dry run changes nothing

    kept = _json(vault.cli("files", "restore", snap.id, "--yes", "--json"))
    assert kept["restored_objects"] == 1 and kept["deleted_extra"] == 0
    assert kept["safety_snapshot_id"]  # the changed file was overwritten: kept first
    assert (src / "users/42/new upload.png").exists()
    assert (src / "users/42/notes.txt").read_text() == "hello\n" * 500

    catalog = vault.reopen_catalog()
    request = restore.FileRestoreRequest(snap.id, delete_extra=True)
    gone = restore.run(settings, catalog, request)
    assert gone.deleted_extra == 1 and gone.restored_objects == 0
    assert _expected(src) == original
    assert gone.safety_snapshot_id is not None
    back = tmp_path / "safety"
    restore.run(
        settings, catalog, restore.FileRestoreRequest(gone.safety_snapshot_id, to=str(back))
    )
    assert (back / "users/42/new upload.png").read_bytes() == b"\x89PNG\r\n\x1a\nnew"
    safety = rows.get_snapshot(catalog, gone.safety_snapshot_id)
    assert safety.trigger == "pre-restore" and safety.labels == {"restore_of": snap.id}


def test_encrypted_snapshot_needs_the_identity(vault: Vault, tmp_path: Path) -> None:
    identity = pyrage.x25519.Identity.generate()
    src = _source(tmp_path)
    settings = _config(vault, src, extra=f"encrypt_to = [{toml_str(str(identity.to_public()))}]")
    snap = snapshot(settings, vault.catalog, SnapshotRequest(file_set="up"))
    stored = [p for p in vault.backups_dir.rglob("*") if p.is_file()]
    blobs = [p for p in stored if "/blobs-age-" in p.as_posix()]
    assert len(blobs) == 5 and all(p.name.endswith(".age") for p in blobs)
    for path in blobs + [p for p in stored if ".manifest." in p.name]:
        assert path.read_bytes().startswith(b"age-encryption.org/v1")

    out = tmp_path / "out"
    refused = vault.cli("files", "restore", snap.id, "--to", str(out), "--yes")
    assert refused.returncode == 7
    assert "--identity" in error_line(refused)
    assert not out.exists() or tree(out) == {}

    decrypt = Decryptor([identity])
    catalog = vault.reopen_catalog()
    restore.run(
        settings, catalog, restore.FileRestoreRequest(snap.id, to=str(out), decrypt=decrypt)
    )
    assert tree(out) == _expected(src)
    (src / "a/c.json").write_text('{"x": 2}')
    again = snapshot(settings, catalog, SnapshotRequest(file_set="up"))  # no identity needed:
    assert again.copied_objects == 1  # compared with the plain manifest cached locally


def test_objects_of_a_few_mib_stream_into_their_blobs_encrypted_or_not(
    vault: Vault, tmp_path: Path
) -> None:
    """Objects read whole but over 1 MiB are compressed (and encrypted) into their blob as a
    stream: the blobs are what their names say, and restores give the same bytes."""
    identity = pyrage.x25519.Identity.generate()
    src = tmp_path / "big"
    src.mkdir()
    (src / "log.txt").write_bytes(b"GET /index.html 200\n" * 150_000)  # 3 MiB, compresses
    (src / "photo.raw").write_bytes(os.urandom(2 * 1024 * 1024 + 17))  # random, 2 MiB
    for plain in (True, False):
        extra = "" if plain else f"encrypt_to = [{toml_str(str(identity.to_public()))}]"
        settings = _config(vault, src, extra=extra)
        snap = snapshot(settings, vault.catalog, SnapshotRequest(file_set="up"))
        assert snap.copied_objects == 2
        kind = "/blobs-age-" if not plain else "/blobs/"
        blobs = [p for p in vault.backups_dir.rglob("*") if p.is_file() and kind in p.as_posix()]
        assert len(blobs) >= 2
        if not plain:
            assert all(p.read_bytes().startswith(b"age-encryption.org/v1") for p in blobs)
        else:
            text = [p for p in blobs if p.stat().st_size < 1024 * 1024]
            assert text, "the log was stored compressed"
        out = tmp_path / f"out-{plain}"
        decrypt = None if plain else Decryptor([identity])
        request = restore.FileRestoreRequest(snap.id, to=str(out), decrypt=decrypt)
        restore.run(settings, vault.catalog, request)
        for name in ("log.txt", "photo.raw"):
            assert (out / name).read_bytes() == (src / name).read_bytes()
        assert verify.verify(settings, vault.catalog, snap.id, full=True, decrypt=decrypt).ok


def test_retention_sweeps_only_unreferenced_blobs_and_verify_finds_damage(
    vault: Vault, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    target = tmp_path / "second"
    settings = _config(
        vault,
        src,
        storage=f"storage = [{toml_str(str(vault.backups_dir))}, {toml_str(str(target))}]",
        extra="retention = { minimum_redundancy = 1 }",
    )
    catalog = vault.catalog
    old = snapshot(settings, catalog, SnapshotRequest(file_set="up"))
    (src / "users/42/notes.txt").write_text("only in the new snapshot")
    new = snapshot(settings, catalog, SnapshotRequest(file_set="up"))
    assert [c.status for c in rows.copies_of(catalog, new.id)] == ["completed"]
    assert len(list(target.rglob("*.zst"))) >= 6  # the copy's blobs, index and manifest

    running = FileSnapshotRecord(
        id="fs-running",
        file_set="up",
        source=str(src),
        storage=str(vault.backups_dir),
        manifest_key="m",
        index_key="i",
        started_at=datetime.now(UTC),
        runner=runtime.runner_id(),
    )
    rows.save_snapshot(catalog, running)
    later = datetime.now(UTC) + timedelta(days=3)
    blocked = retention.sweep(settings, catalog, "up", str(vault.backups_dir), now=later)
    assert blocked.skipped == "a snapshot of the set is running" and blocked.deleted_blobs == 0
    running.status = "failed"
    rows.save_snapshot(catalog, running)

    report = retention.apply(settings, catalog, keep_last=1, now=later)
    assert [(i.snapshot_id, i.deleted) for i in report.items if not i.keep] == [(old.id, True)]
    swept = {s.storage: s for s in report.sweeps}
    assert swept[str(vault.backups_dir)].deleted_blobs == 1  # the old notes.txt only
    assert swept[str(target)].deleted_blobs == 1
    assert verify.verify(settings, catalog, new.id, full=True).ok
    out = tmp_path / "out"
    restore.run(settings, catalog, restore.FileRestoreRequest(new.id, to=str(out)))
    assert tree(out) == _expected(src)

    blob = next(p for p in vault.backups_dir.rglob("*.zst") if "/blobs/" in p.as_posix())
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert verify.verify(settings, catalog, new.id).ok  # sizes are still right
    damaged = vault.cli("files", "verify", new.id, "--full")
    assert damaged.returncode == 10 and "differs" in error_line(damaged)
    blob.unlink()
    with pytest.raises(VerifyError, match="missing"):
        verify.verify(settings, vault.reopen_catalog(), new.id)
