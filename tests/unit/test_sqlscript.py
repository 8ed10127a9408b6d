"""SetFilter: drops SET lines the server does not know, chunk boundaries never matter, and
COPY data always passes untouched."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from pgvault.dumps.sqlscript import SetFilter

KNOWN = {"statement_timeout", "search_path", "client_encoding", "lock_timeout"}

KEPT_SQL = [
    "SET statement_timeout = 0;",
    "SET Lock_Timeout = 0;",  # names are case-insensitive
    "SET search_path TO public, pg_catalog;",
    "SET client_encoding = 'UTF8';",
    "SET myapp.flag = on;",  # custom (dotted) settings are always kept
    "SELECT pg_catalog.set_config('search_path', '', false);",
    "CREATE TABLE public.t (id integer, note text);",
    "-- SET transaction_timeout = 0;",  # a comment, not a SET
    "",
]
DROPPED_SQL = {
    "SET transaction_timeout = 0;": "transaction_timeout",
    "SET brand_new_setting TO 'x';": "brand_new_setting",
}
# COPY rows: anything but the terminator, including lines that look like SQL to drop.
copy_row = st.one_of(
    st.sampled_from([*DROPPED_SQL, "SET transaction_timeout = 0;  ", "COPY x FROM stdin;"]),
    st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=("Cs",), exclude_characters="\n\r"
        ),
        max_size=40,
    ).filter(lambda r: r != "\\."),
)
item = st.one_of(
    st.tuples(st.just("sql"), st.sampled_from(KEPT_SQL + list(DROPPED_SQL))),
    st.tuples(st.just("copy"), st.lists(copy_row, max_size=5)),
)


def _script(items: list[tuple[str, object]]) -> tuple[bytes, bytes, list[str]]:
    """The dump, what the filter must make of it, and the parameters it must drop."""
    given_lines: list[str] = []
    kept_lines: list[str] = []
    dropped: list[str] = []
    for kind, value in items:
        if kind == "sql":
            assert isinstance(value, str)
            given_lines.append(value)
            if value in DROPPED_SQL:
                dropped.append(DROPPED_SQL[value])
            else:
                kept_lines.append(value)
        else:
            assert isinstance(value, list)
            block = ["COPY public.t (id, note) FROM stdin;", *value, "\\."]
            given_lines += block
            kept_lines += block
    dump = "".join(line + "\n" for line in given_lines).encode()
    expected = "".join(line + "\n" for line in kept_lines).encode()
    return dump, expected, dropped


def _filter(dump: bytes, cuts: list[int]) -> tuple[bytes, list[str]]:
    out = io.BytesIO()
    sql_filter = SetFilter(out, KNOWN)
    bounds = [0, *sorted(c % (len(dump) + 1) for c in cuts), len(dump)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        assert sql_filter.write(dump[start:end]) == end - start
    sql_filter.close()
    return out.getvalue(), sql_filter.dropped


@given(items=st.lists(item, max_size=25), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_chunking_never_changes_the_output(
    items: list[tuple[str, object]], cuts: list[int]
) -> None:
    dump, expected, dropped = _script(items)

    whole, whole_dropped = _filter(dump, [])
    chunked, chunked_dropped = _filter(dump, cuts)
    bytewise, _ = _filter(dump, list(range(len(dump))))

    assert whole == expected
    assert chunked == whole
    assert bytewise == whole
    assert whole_dropped == chunked_dropped == dropped


def test_copy_data_is_never_altered() -> None:
    rows = "SET transaction_timeout = 0;\nSET brand_new_setting TO 'x';\n\\\\.\nplain\tvalue\n"
    dump = f"SET transaction_timeout = 0;\nCOPY public.t (note) FROM stdin;\n{rows}\\.\n".encode()

    out, dropped = _filter(dump, [40, 41, 75])

    assert out == f"COPY public.t (note) FROM stdin;\n{rows}\\.\n".encode()
    assert dropped == ["transaction_timeout"]


def test_the_last_line_without_a_newline_is_filtered_on_close() -> None:
    out, dropped = _filter(b"SELECT 1;\nSET transaction_timeout = 0;", [12])
    kept, _ = _filter(b"SELECT 1;\nSET statement_timeout = 0;", [12])

    assert out == b"SELECT 1;\n"
    assert dropped == ["transaction_timeout"]
    assert kept == b"SELECT 1;\nSET statement_timeout = 0;"
