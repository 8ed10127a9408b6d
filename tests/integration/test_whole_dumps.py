"""Only whole dumps are recorded (issue 9, point 5): an upload and ``restore --file`` are
checked as they stream (custom: the TOC and every data block; directory tar: toc.dat and
every file it names; plain: the trailer) and refused when cut short (400 / exit 7, nothing
listed, nothing stored); ``verify`` applies the same check to what is stored."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from pgvault import backups
from pgvault.backups import BackupRequest
from pgvault.dumps import wholeness
from pgvault.errors import EXIT_CODES, ArchiveError, VerifyError
from pgvault.operations import verify
from support.apiserver import ApiServer, assert_error, database_entry
from support.dumptar import directory_tar
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, Vault, error_line


@pytest.fixture(scope="module")
def pagila_dumps(
    pg18: PgCluster, pagila_template: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """Pagila as pg_dump writes it: custom (to a file, and piped), a directory archive as a
    tar (toc.dat first, as pgvault stores it) and plain SQL."""
    where = tmp_path_factory.mktemp("dumps")
    pg18.psql(f"ALTER DATABASE {pagila_template} ALLOW_CONNECTIONS true")
    try:
        url = pg18.url(pagila_template)
        run = [str(pg18.bindir / "pg_dump"), "-d", url]
        env = pg18.env()
        subprocess.run([*run, "-Fc", "-f", str(where / "p.dump")], env=env, check=True)
        subprocess.run([*run, "-Fd", "-f", str(where / "dir")], env=env, check=True)
        piped = subprocess.run([*run, "-Fc", "-Z0"], env=env, check=True, capture_output=True)
        plain = subprocess.run([*run, "-Fp"], env=env, check=True, capture_output=True)
    finally:
        pg18.psql(f"ALTER DATABASE {pagila_template} ALLOW_CONNECTIONS false")
    return {
        "custom": (where / "p.dump").read_bytes(),
        "piped": piped.stdout,
        "tar": directory_tar(where / "dir"),
        "plain": plain.stdout,
    }


def _cuts(kind: str, data: bytes) -> list[int]:
    """Where to cut: early, in the middle, and just short of the end (for a tar: inside its
    last member, before the zero blocks that only pad it; for plain SQL: before the
    trailer)."""
    end = {"tar": [len(data) - 11_000], "plain": [len(data) - 200]}
    return [4096, len(data) // 3, len(data) // 2, *end.get(kind, [len(data) - 600, len(data) - 1])]


def test_whole_dumps_pass_and_every_cut_is_refused(pagila_dumps: dict[str, bytes]) -> None:
    for kind, data in pagila_dumps.items():
        whole = wholeness.check_opened(io.BytesIO(data))
        assert whole.kind == {"piped": "custom"}.get(kind, kind)
        if kind != "plain":
            assert whole.object_counts()["TABLE DATA"] >= 15
        for cut in _cuts(kind, data):
            with pytest.raises(ArchiveError):
                wholeness.check_opened(io.BytesIO(data[:cut]))


def test_a_tar_missing_a_data_file_named_by_its_toc_is_refused(
    pagila_dumps: dict[str, bytes],
) -> None:
    complete = tarfile.open(fileobj=io.BytesIO(pagila_dumps["tar"]), mode="r")
    partial = io.BytesIO()
    with tarfile.open(fileobj=partial, mode="w|") as out:
        for member in complete.getmembers()[:-3]:  # a clean tar, three data files short
            out.addfile(member, complete.extractfile(member))
    with pytest.raises(wholeness.CutShort, match="files its TOC names are missing"):
        wholeness.check_opened(io.BytesIO(partial.getvalue()))


def test_an_upload_cut_short_is_400_and_nothing_is_listed(
    tmp_path: Path, pg18: PgCluster, janitor: Janitor, pagila_dumps: dict[str, bytes]
) -> None:
    live, _owner = janitor.owned(pg18, "cut")
    server = ApiServer.start(tmp_path / "home", databases={"app": database_entry(pg18, live)})
    try:
        with server.client(server.token("admin")) as admin:
            for kind in ("custom", "tar", "plain"):
                data = pagila_dumps[kind]
                answer = admin.post(
                    "/databases/app/restore-upload",
                    files={"file": (f"cut.{kind}", data[: len(data) // 2])},
                    data={"confirm": "app"},
                )
                assert_error(answer, 400, "cut short")
            assert admin.get("/backups", params={"status": "failed"}).json()["items"] == []
            assert admin.get("/backups").json()["items"] == []
            assert admin.get("/jobs").json() == []
            health = admin.get("/health").json()
        assert health["databases"][0]["status"] != "ok"  # no backup: never "healthy"
        stored = Path(server.settings.default_storage_location)
        assert not [p for p in stored.rglob("*") if p.is_file()]
    finally:
        server.stop()


def test_restore_file_cut_short_is_exit_7_before_anything(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, tmp_path: Path,
    pagila_dumps: dict[str, bytes],
) -> None:  # fmt: skip
    live = fresh_pagila()
    cut = tmp_path / "cut.dump"
    cut.write_bytes(pagila_dumps["custom"][: len(pagila_dumps["custom"]) * 2 // 3])

    done = vault.cli(
        "restore", "--file", str(cut), "--to", pg18.url(live), "--yes", "--as-superuser",
        cluster=pg18,
    )  # fmt: skip

    assert done.returncode == EXIT_CODES[ArchiveError]
    assert "custom archive is cut short" in error_line(done)
    assert vault.reopen_catalog().list_restores() == []


def test_verify_refuses_a_stored_backup_that_is_not_whole(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    """An object whose catalog row matches its bytes (as an upload recorded before this
    check could be) but which is cut short fails verification."""
    db = janitor.new(pg18, "verify")
    pg18.create_database(db)
    pg18.psql("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g", db)
    record = backups.create(
        vault.settings,
        vault.catalog,
        BackupRequest(target=vault.target(pg18, db), dump_format="custom", compression="none"),
    )
    assert verify.verify(vault.settings, vault.catalog, record.id).ok
    stored = vault.stored(record)
    cut = stored.read_bytes()[: (record.size_bytes or 0) // 2]
    stored.write_bytes(cut)
    record.size_bytes, record.sha256 = len(cut), hashlib.sha256(cut).hexdigest()
    vault.catalog.save_backup(record)

    with pytest.raises(VerifyError, match="cut short"):
        verify.verify(vault.settings, vault.catalog, record.id)
    assert vault.catalog.get_backup(record.id).verify_status == "failed"
