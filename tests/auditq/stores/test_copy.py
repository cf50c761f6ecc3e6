"""Binary COPY (auditq/stores/copy.py): each value stored as Postgres reads its text."""

import psycopg
import pytest

from auditq.events import build_event, is_inet
from auditq.stores import DataRejected
from auditq.stores.copy import binary_copy
from auditq.stores.postgres import PostgresStore

ADDRESSES = [
    "192.0.2.1", "0.0.0.0", "255.255.255.255", "::", "::1", "2001:db8::1",  # noqa: S104 (data, not a bind)
    "2001:0db8:0000:0000:0000:0000:0000:0001", "fe80::1", "::ffff:192.0.2.1", "::192.0.2.1",
    "FFFF:ffff::",
]  # fmt: skip
JSON_TEXTS = ["{}", '{"a": [1, 2.5, null, true]}', '{"é": "\\u00e9 \\ud83d\\ude00 \\n"}']


def copied(dsn: str, rows: list[tuple[str, str]]) -> list[tuple]:
    """``rows`` of (address, JSON text) by binary COPY, each beside its text's own parse."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("create temp table t (n int, ip inet, doc jsonb)")
        with binary_copy(cur, "t", ["n", "ip", "doc"], ["int4", "inet", "jsonb"]) as copy:
            for n, (ip, doc) in enumerate(rows):
                copy.write_row((n, ip, doc))
        return cur.execute(
            "select t.ip = x.ip::inet, abbrev(t.ip), family(t.ip), masklen(t.ip),"
            " t.doc = x.doc::jsonb, t.doc::text"
            " from t join unnest(%s::text[], %s::text[]) with ordinality as x(ip, doc, n)"
            " on t.n = x.n - 1 order by t.n",
            ([ip for ip, _ in rows], [doc for _, doc in rows]),
        ).fetchall()


def test_addresses_are_stored_as_postgres_reads_their_text(pg_dsn):
    assert all(is_inet(address) for address in ADDRESSES)
    rows = copied(pg_dsn, [(address, "{}") for address in ADDRESSES])
    assert [row[0] for row in rows] == [True] * len(ADDRESSES)
    with psycopg.connect(pg_dsn) as conn:
        expected = conn.execute(
            "select abbrev(a::inet), family(a::inet), masklen(a::inet)"
            " from unnest(%s::text[]) with ordinality as x(a, n) order by n",
            (ADDRESSES,),
        ).fetchall()
    assert [row[1:4] for row in rows] == expected


def test_json_text_is_stored_as_postgres_parses_it(pg_dsn):
    rows = copied(pg_dsn, [("192.0.2.1", text) for text in JSON_TEXTS])
    assert [row[4] for row in rows] == [True] * len(JSON_TEXTS)
    assert rows[2][5] == '{"é": "é 😀 \\n"}'


@pytest.mark.parametrize("address", ["192.0.2.1/24", "host.example", "fe80::1%eth0", "1.2.3"])
def test_an_address_inet_does_not_take_is_the_rows_fault_and_not_quoted(pg_dsn, clean_db, address):
    # The model refuses these; the row is made past it, as a caller that skipped it would.
    good = build_event({"action": "a", "ip": "192.0.2.1"})
    bad = build_event({"action": "b"}).model_copy(update={"ip": address})
    store = PostgresStore(pg_dsn, timeout=5)
    try:
        with pytest.raises(DataRejected) as refused:
            store.insert_events([good, bad])
        assert address not in str(refused.value)
        assert store.insert_events([good]) == 1  # the connection is still good
    finally:
        store.close()


def test_a_query_after_a_copy_sends_a_str_parameter_as_text_still(pg_dsn):
    # The dumpers serve COPY's declared types only, never a parameter's Python type: sent
    # as inet or jsonb, these would read back as "192.0.2.1/32" and '{"a": 1}'.
    query, params = "select %s::text, %s::text", ("192.0.2.1", '{"a":1}')
    with psycopg.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("create temp table t (ip inet, doc jsonb)")
        with binary_copy(cur, "t", ["ip", "doc"], ["inet", "jsonb"]) as copy:
            copy.write_row(params)
        assert cur.execute(query, params).fetchone() == params
        assert conn.execute(query, params).fetchone() == params
