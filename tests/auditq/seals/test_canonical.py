"""The canonical row form: the same bytes whichever store read the row."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from auditq.events import build_event
from auditq.seals import canonical
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import verify
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore


def odd_events():
    """Values whose text forms differ between readers unless normalised."""
    return [
        build_event(
            {
                "action": "edge.case",
                "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat(),  # .0 µs
                "ip": "2001:db8:0:0:0:0:0:7",
                "metadata": {
                    "big": 2**70,
                    "f": 0.1,
                    "e": 1e-7,
                    "ü": "Zoë ✓ 🙂",
                    "z": {"b": 1, "a": [], "q": 'say "hi" \\ \n\u0007'},
                },
                "user_agent": 'Mozilla "5.0" \\ \t\u2028\u007f',
            }
        ),
        build_event({"action": "edge.v4", "ip": "192.0.2.7", "metadata": {"n": -(2**63)}}),
        build_event({"action": "edge.none"}),
    ]


@pytest.mark.parametrize("sealer_kind", ["postgres", "supabase"])
def test_sealed_by_one_store_verified_by_the_other(
    sealer_kind, clean_db, postgrest, signer, checker
):
    stores = {
        "postgres": PostgresStore(clean_db),
        "supabase": SupabaseStore(postgrest.url, postgrest.service_key),
    }
    stores["postgres"].insert_events(odd_events())
    assert seal_pass(stores[sealer_kind], signer, grace=0).rows == 3
    other = stores["supabase" if sealer_kind == "postgres" else "postgres"]
    report = verify(other, checker)
    assert report.ok, report.findings
    assert report.rows == 3
    for store in stores.values():
        store.close()


def test_the_database_and_python_build_the_same_bytes(clean_db, postgrest):
    stores = [PostgresStore(clean_db), SupabaseStore(postgrest.url, postgrest.service_key)]
    stores[0].insert_events(odd_events())
    with psycopg.connect(clean_db) as conn:
        expected = dict(
            conn.execute("select id::text, audit_row_canonical(l) from audit_logs l").fetchall()
        )
    for store in stores:
        rows = store.sealable_rows(0, 2**62, None, 100)
        assert {r["id"]: canonical.canonical_row(r).decode() for r in rows} == expected
        store.close()


def test_the_canonical_bytes_are_fixed():
    row = {
        "id": "01A227A6-0533-7A80-A41F-ACF152D76991",
        "occurred_at": "2026-11-29T15:12:01.04+01:00",
        "received_at": datetime(2026, 11, 29, 14, 12, 2, tzinfo=UTC),
        "action": 'a "quoted" \\ line\nbreak\x01',
        "ip": "2001:db8::7",
        "metadata": '{"b": 1, "aa": [2.5, null]}',
        "txid": 42,
    }
    expected = (
        b'["01a227a6-0533-7a80-a41f-acf152d76991", "2026-11-29T14:12:01.040000Z", '
        b'"2026-11-29T14:12:02.000000Z", "a \\"quoted\\" \\\\ line\\nbreak\\u0001", '
        b"null, null, null, null, null, null, null, "
        b'"2001:db8::7", null, null, null, {"b": 1, "aa": [2.5, null]}, "42"]'
    )
    assert canonical.canonical_row(row) == expected
