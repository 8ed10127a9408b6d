"""PsqlGuard: every psql meta-command outside COPY data is refused with its line number,
whatever the chunking; SQL and COPY data pass untouched (pg_dump's own \\restrict lines
dropped); constructs psql could read differently from the guard are refused, never
passed."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvault.dumps.psqlguard import (
    MetaCommandRefused,
    PsqlGuard,
    restrict_key,
    scan,
    supports_restrict,
)
from pgvault.errors import ArchiveError

SAFE = b"""--
-- PostgreSQL database dump
--

\\restrict 4fQe8xYzAbC

SET statement_timeout = 0;
SET standard_conforming_strings = on;
CREATE FUNCTION public.f() RETURNS text
    LANGUAGE plpgsql
    AS $_$ BEGIN RETURN '\\! not a command'; END $_$;
CREATE FUNCTION public.g() RETURNS integer LANGUAGE sql
BEGIN ATOMIC
 SELECT 1;
 SELECT 2;
END;
COMMENT ON TABLE public.t IS 'a \\ backslash; and ''quotes'' \\! too';
COMMENT ON COLUMN public.t.x IS E'escaped \\' quote \\\\ and \\n';
CREATE TABLE public."we\\ird" (id integer, "x\\y" text);
/* a comment with \\! inside /* nested */ still comment */
SELECT $$dollar \\! quoted$$, $tag$ \\o /tmp/x $tag$;  -- trailing \\! comment
SELECT a$b, $1 FROM x$y;
COPY public.t (id, note) FROM stdin;
1\t\\N
2\ta tab\\there \\! and \\o are data
\\.
COPY public."we\\ird" (id, "x\\y") FROM stdin;
3\t\\\\
\\.
SELECT 'after copy';
--
-- PostgreSQL database dump complete
--

\\unrestrict 4fQe8xYzAbC
"""

EVIL = {
    b"\\! id > /tmp/x": "\\!",
    b"\\o /tmp/owned": "\\o",
    b"\\copy (select 1) to program 'id'": "\\copy",
    b"SELECT 'DROP TABLE x' \\gexec": "\\gexec",
    b"\\setenv PAGER 'sh -c id'": "\\setenv",
    b"SELECT 1; \\! id": "\\!",
    b"\\connect other": "\\connect",
    b"\\unrestrict somethingelse; \\! id": "\\unrestrict",
}


def _through(data: bytes, cuts: list[int] | None = None) -> bytes:
    out = io.BytesIO()
    guard = PsqlGuard(out, "KEY0")
    pieces, last = [], 0
    for cut in sorted(cuts or []):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    for piece in pieces:
        guard.write(piece)
    guard.close()
    return out.getvalue()


def test_safe_sql_passes_with_its_own_restrict_lines_dropped() -> None:
    passed = _through(SAFE)
    assert passed.startswith(b"\\restrict KEY0\n")
    body = passed.removeprefix(b"\\restrict KEY0\n")
    expected = SAFE.replace(b"\\restrict 4fQe8xYzAbC", b"").replace(
        b"\\unrestrict 4fQe8xYzAbC", b""
    )
    assert body == expected
    assert body.count(b"\n") == SAFE.count(b"\n")  # line numbers stay true


@pytest.mark.parametrize(("line", "command"), list(EVIL.items()))
def test_each_meta_command_is_refused_with_its_line(line: bytes, command: str) -> None:
    data = SAFE.replace(b"SELECT 'after copy';", line)
    at = data[: data.index(line)].count(b"\n") + 1
    out = io.BytesIO()
    guard = PsqlGuard(out, "KEY0")
    with pytest.raises(MetaCommandRefused) as caught:
        guard.write(data)
        guard.close()
    assert str(caught.value) == (
        f"this dump contains psql meta-commands ({command}) at line {at}: refused"
    )
    assert line not in out.getvalue()  # nothing from that line on reached psql
    with pytest.raises(MetaCommandRefused):
        guard.write(b"SELECT 1;\n")  # and it stays refused


@pytest.mark.parametrize(
    "trick",
    [
        # psql stays in SQL mode after these, so the next line is not COPY data
        b"COPY (SELECT * FROM stdin) TO stdout;\n\\! id\n\\.\n",
        b"COPY t FROM 'stdin';\n\\! id\n\\.\n",
        b"COPY t TO stdout /* FROM stdin */;\n\\! id\n\\.\n",
        b"SELECT (1; COPY t FROM stdin;\n\\! id\n\\.\n",
        b"CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; COPY t FROM stdin;\n"
        b"\\! id\n\\.\nEND;\n",
        b"SELECT ';\nCOPY t FROM stdin;\n';\n\\! id\n",
        b"SELECT $q$\nCOPY t FROM stdin;\n$q$;\n\\! id\n",
        b"SELECT E'\\';\nCOPY t FROM stdin;\n';\n\\! id\n",
        b"COPY t FROM stdin;\nrow\n\\.garbage\n\\! id\n",
    ],
)
def test_what_psql_reads_as_sql_is_checked_as_sql(trick: bytes) -> None:
    with pytest.raises(MetaCommandRefused):
        scan(io.BytesIO(trick))


@pytest.mark.parametrize(
    "ambiguous",
    [
        b"SELECT 1;\x00'\n\\! id\n';\n",
        b"SELECT 1$$ x $$;\n",
        b"COPY t FROM stdin; SELECT 1;\n",
    ],
)
def test_sql_psql_could_read_otherwise_is_refused(ambiguous: bytes) -> None:
    with pytest.raises(ArchiveError):
        scan(io.BytesIO(ambiguous))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SAFE)), max_size=12))
def test_chunk_boundaries_never_matter(cuts: list[int]) -> None:
    assert _through(SAFE, cuts) == _through(SAFE)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=len(SAFE) + 20), max_size=8),
    st.sampled_from(sorted(EVIL)),
)
def test_refusal_does_not_depend_on_chunks(cuts: list[int], line: bytes) -> None:
    data = SAFE.replace(b"SELECT 'after copy';", line)
    with pytest.raises(MetaCommandRefused, match=r"at line \d+: refused"):
        _through(data, [c for c in cuts if c <= len(data)])


def test_restricted_mode_versions_and_keys() -> None:
    assert supports_restrict(18, 0) and supports_restrict(17, 6) and supports_restrict(15, 14)
    assert not supports_restrict(17, 5) and not supports_restrict(15, 13)
    assert not supports_restrict(12, 99)
    first, second = restrict_key(), restrict_key()
    assert first != second and first.isalnum() and len(first) == 64
