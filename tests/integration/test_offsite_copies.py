"""Encrypted backups (age) and second copies (3-2-1), against a real PostgreSQL 18."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
import zstandard

from pgvault import backups, databases, restores
from pgvault.config.settings import load_settings
from pgvault.dumps.encryption import Decryptor
from pgvault.errors import ArchiveError, VerifyError
from pgvault.operations import verify
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Vault, unique_name


@pytest.fixture
def age_key(tmp_path: Path) -> tuple[str, Path]:
    """A fresh age identity: ``(recipient, identity file)``."""
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# test key\n{identity}\n")
    return str(identity.to_public()), key_file


def _decryptor(key_file: Path) -> Decryptor:
    line = [ln for ln in key_file.read_text().splitlines() if ln.startswith("AGE-")][0]
    return Decryptor([pyrage.x25519.Identity.from_str(line)])


def test_encrypted_backup_restores_identical(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, age_key: tuple[str, Path]
) -> None:
    recipient, key_file = age_key
    source = fresh_pagila()
    vault = Vault.open(tmp_path / "home")
    record = backups.create(
        vault.settings,
        vault.catalog,
        backups.BackupRequest(
            target=vault.target(pg18, source), dump_format="custom", recipients=[recipient]
        ),
    )
    stored = vault.stored(record).read_bytes()
    # zstd inside the archive with a zstd-capable pg_dump, else in the stream
    ext = ".dump.age" if record.compressed_by == "pg_dump" else ".dump.zst.age"
    assert record.encrypted and record.storage_key.endswith(ext)
    assert stored.startswith(b"age-encryption.org/v1")
    assert hashlib.sha256(stored).hexdigest() == record.sha256
    assert record.row_counts and record.row_counts["public.rental"] == 16044
    globals_bytes = (vault.backups_dir / (record.globals_key or "")).read_bytes()
    assert globals_bytes.startswith(b"age-encryption.org/v1")  # role hashes never in clear

    target = unique_name("enc")
    restores.restore(
        vault.settings,
        vault.catalog,
        restores.RestoreRequest(
            target=vault.target(pg18, target),
            backup_id=record.id,
            confirm=target,
            decrypt=_decryptor(key_file),
        ),
    )
    assert_same_database(database_fingerprint(pg18, source), database_fingerprint(pg18, target))
    pg18.drop_database(target)


def test_encrypted_object_opens_with_pyrage_alone(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, age_key: tuple[str, Path]
) -> None:
    """The stored object is standard age + zstd: pyrage and zstandard alone (no pgvault)
    give a file plain pg_restore accepts."""
    recipient, key_file = age_key
    vault = Vault.open(tmp_path / "home")
    record = backups.create(
        vault.settings,
        vault.catalog,
        backups.BackupRequest(
            target=vault.target(pg18, fresh_pagila()), dump_format="custom", recipients=[recipient]
        ),
    )
    identity = pyrage.x25519.Identity.from_str(key_file.read_text().splitlines()[1])
    plaintext = pyrage.decrypt(vault.stored(record).read_bytes(), [identity])
    archive = tmp_path / "plain.dump"
    if record.compressed_by == "pg_dump":  # a custom archive with pg_dump's own zstd inside
        archive.write_bytes(plaintext)
    else:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(plaintext)) as reader:
            archive.write_bytes(reader.read())
    listing = pg18.client("pg_restore", "--list", str(archive))
    assert "TABLE DATA public rental" in listing
    if shutil.which("age"):
        out = subprocess.run(
            ["age", "-d", "-i", str(key_file), str(vault.stored(record))],
            capture_output=True,
            check=True,
        ).stdout
        assert out == plaintext


def test_missing_or_wrong_identity_touches_nothing(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, age_key: tuple[str, Path]
) -> None:
    recipient, _key_file = age_key
    vault = Vault.open(tmp_path / "home")
    record = backups.create(
        vault.settings,
        vault.catalog,
        backups.BackupRequest(
            target=vault.target(pg18, fresh_pagila()), dump_format="custom", recipients=[recipient]
        ),
    )
    target = unique_name("nokey")
    before = set(pg18.databases())
    wrong = Decryptor([pyrage.x25519.Identity.generate()])
    for decrypt in (None, wrong):
        with pytest.raises(ArchiveError, match="identity"):
            restores.restore(
                vault.settings,
                vault.catalog,
                restores.RestoreRequest(
                    target=vault.target(pg18, target),
                    backup_id=record.id,
                    confirm=target,
                    decrypt=decrypt,
                ),
            )
    assert set(pg18.databases()) == before

    # quick verify needs no key: the catalog's sha256 is of the stored (encrypted) bytes
    assert verify.verify(vault.settings, vault.catalog, record.id).ok
    path = vault.stored(record)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="corrupt"):
        verify.verify(vault.settings, vault.catalog, record.id)


def test_second_target_gets_identical_copy_and_serves_restores(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila
) -> None:
    source = fresh_pagila()
    primary, offsite = tmp_path / "primary", tmp_path / "offsite"
    password_file = tmp_path / "pw"
    password_file.write_text(pg18.password + "\n")
    config = tmp_path / "pgvault.toml"
    config.write_text(
        f'[storage_targets.primary]\nurl = "{primary}"\n'
        f'[storage_targets.offsite]\nurl = "{offsite}"\n'
        f'[databases.app]\nurl = "{pg18.url(source)}"\npassword_file = "{password_file}"\n'
        'storage = ["primary", "offsite"]\n'
    )
    vault = Vault.open(tmp_path / "home")
    settings = load_settings(config, home=tmp_path / "home")
    app = databases.from_config(settings, "app")
    record = backups.create(settings, vault.catalog, backups.BackupRequest(target=app))
    copy = vault.catalog.copies_of([record.id])[record.id][0]
    assert copy.status == "completed" and copy.storage == "offsite"
    copied = (offsite / record.storage_key).read_bytes()
    assert hashlib.sha256(copied).hexdigest() == record.sha256 == copy.sha256

    shutil.rmtree(primary)  # the primary target is lost
    target = unique_name("fromcopy")
    restores.restore(
        settings,
        vault.catalog,
        restores.RestoreRequest(
            target=vault.target(pg18, target), backup_id=record.id, confirm=target
        ),
    )
    assert_same_database(database_fingerprint(pg18, source), database_fingerprint(pg18, target))
    pg18.drop_database(target)

    backups.delete(settings, vault.catalog, record.id)
    assert not any(p.is_file() for p in offsite.rglob("*"))
    assert vault.catalog.copies_of([record.id])[record.id][0].status == "deleted"
