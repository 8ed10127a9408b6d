"""Command builders: exact flags, and never a password on a command line."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgvault.errors import ConfigError
from pgvault.postgres import conninfo
from pgvault.postgres.commands import (
    pg_dump_command,
    pg_dumpall_globals_command,
    pg_restore_command,
    psql_command,
)

PG_DUMP = Path("/opt/pg/bin/pg_dump")
DSN = "host=db.example port=5432 user=app dbname=shop"


def test_pg_dump_custom_to_stdout_with_every_option() -> None:
    argv = pg_dump_command(
        PG_DUMP,
        DSN,
        dump_format="custom",
        compress="zstd:3",
        tables=["public.actor", "public.film"],
        exclude_tables=["public.log"],
        schemas=["public"],
        snapshot="00000003-0000001B-1",
    )

    assert argv == [
        "/opt/pg/bin/pg_dump",
        f"--dbname={DSN}",
        "--format=c",
        "--compress=zstd:3",
        "--table=public.actor",
        "--table=public.film",
        "--exclude-table=public.log",
        "--schema=public",
        "--snapshot=00000003-0000001B-1",
    ]
    assert not any(a.startswith(("--file", "--jobs")) for a in argv)  # custom: stdout, serial


def test_pg_dump_plain_keeps_pg_dumps_default_compression() -> None:
    argv = pg_dump_command(PG_DUMP, DSN, dump_format="plain", jobs=4)

    assert argv == ["/opt/pg/bin/pg_dump", f"--dbname={DSN}", "--format=p"]


def test_pg_dump_directory_writes_to_its_directory_with_jobs(tmp_path: Path) -> None:
    out = tmp_path / "dump"

    argv = pg_dump_command(
        PG_DUMP, DSN, dump_format="directory", compress="0", jobs=3, output_dir=out
    )

    assert argv == [
        "/opt/pg/bin/pg_dump",
        f"--dbname={DSN}",
        "--format=d",
        "--compress=0",
        f"--file={out}",
        "--jobs=3",
    ]
    single = pg_dump_command(PG_DUMP, DSN, dump_format="directory", output_dir=out)
    assert not any(a.startswith("--jobs") for a in single)
    with pytest.raises(ConfigError, match="output directory"):
        pg_dump_command(PG_DUMP, DSN, dump_format="directory")


def test_pg_dumpall_globals_only_and_role_passwords() -> None:
    path = Path("/opt/pg/bin/pg_dumpall")

    assert pg_dumpall_globals_command(path, DSN, role_passwords=True) == [
        str(path),
        f"--dbname={DSN}",
        "--globals-only",
    ]
    assert pg_dumpall_globals_command(path, DSN, role_passwords=False)[-1] == "--no-role-passwords"


def test_pg_restore_flags() -> None:
    path = Path("/opt/pg/bin/pg_restore")
    archive = Path("/backups/x.dump")

    assert pg_restore_command(path, archive=archive, list_only=True) == [
        str(path),
        "--list",
        str(archive),
    ]
    assert pg_restore_command(path, to_stdout=True) == [str(path), "--file=-"]
    assert pg_restore_command(
        path,
        dsn=DSN,
        archive=archive,
        jobs=4,
        clean=True,
        no_owner=True,
        no_privileges=True,
    ) == [
        str(path),
        f"--dbname={DSN}",
        "--jobs=4",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        str(archive),
    ]
    serial = pg_restore_command(path, dsn=DSN, single_transaction=True, exit_on_error=True, jobs=1)
    assert serial == [str(path), f"--dbname={DSN}", "--single-transaction", "--exit-on-error"]


def test_psql_stops_at_the_first_error_and_ignores_psqlrc() -> None:
    path = Path("/opt/pg/bin/psql")

    base = psql_command(path, DSN)
    assert base == [str(path), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={DSN}"]
    assert psql_command(path, DSN, single_transaction=True, file=Path("/x.sql"))[-2:] == [
        "--single-transaction",
        "--file=/x.sql",
    ]
    assert psql_command(path, DSN, command="SELECT 1", file=Path("/x.sql"))[-1] == (
        "--command=SELECT 1"
    )


# "§" appears nowhere else in the argv, so finding the password there means it leaked.
passwords = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1
).map(lambda p: f"§{p}§")


@given(password=passwords)
def test_no_password_ever_reaches_argv(password: str) -> None:
    info = conninfo.parse(f"postgresql://app:{quote(password, safe='')}@db.example:5432/shop")
    dsn = info.dsn()
    argvs = [
        pg_dump_command(PG_DUMP, dsn, dump_format="custom", snapshot="1-2-3"),
        pg_dump_command(PG_DUMP, dsn, dump_format="directory", output_dir=Path("/tmp/d")),
        pg_dumpall_globals_command(Path("pg_dumpall"), dsn, role_passwords=True),
        pg_restore_command(Path("pg_restore"), dsn=dsn, archive=Path("/a")),
        psql_command(Path("psql"), dsn, command="SELECT 1"),
    ]

    assert info.password == password
    assert info.dbname == "shop"
    for argv in argvs:
        assert not any(password in arg for arg in argv), argv
    assert password not in repr(info) and password not in info.display()
    assert info.child_env({})["PGPASSWORD"] == password  # the child gets it this way only


def test_password_from_the_environment_stays_out_of_the_dsn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", "from-env-secret")

    info = conninfo.parse("postgresql://app@db.example/shop")

    assert info.password == "from-env-secret"
    assert "from-env-secret" not in info.dsn()
    assert "password" not in info.dsn()


def test_a_kept_parse_still_reads_a_rotated_password_file(tmp_path: Path) -> None:
    """A configured URL's parse is kept (health describes every database per request); its
    password file is read at every parse, so a rotated password is used at once."""
    secret = tmp_path / "password"
    secret.write_text("first-secret\n")
    url = "postgresql://app@db.example:5433/shop?sslmode=require"

    first = conninfo.parse(url, password_file=secret, keep=True)
    secret.write_text("second-secret\n")
    again = conninfo.parse(url, password_file=secret, keep=True)

    assert (first.password, again.password) == ("first-secret", "second-secret")
    assert first.params == again.params == conninfo.parse(url).params
    assert again.params["sslmode"] == "require" and "password" not in again.dsn()
    with pytest.raises(ConfigError, match="invalid connection string"):
        conninfo.parse("postgresql://[bad", keep=True)
