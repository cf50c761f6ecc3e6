"""The canonical row form: the same bytes whichever store read the row."""

from __future__ import annotations

from datetime import UTC, datetime

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
                    "e": 1e16,
                    "ü": "Zoë ✓",
                    "z": {"b": 1, "a": []},
                },
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


def test_the_canonical_bytes_are_fixed():
    row = {
        "id": "01A227A6-0533-7A80-A41F-ACF152D76991",
        "occurred_at": "2026-11-29T15:12:01.04+01:00",
        "received_at": datetime(2026, 11, 29, 14, 12, 2, tzinfo=UTC),
        "action": "a",
        "ip": "2001:db8::7",
        "metadata": {"b": 1, "a": [2.5, None]},
        "txid": 42,
    }
    assert canonical.canonical_row(row) == (
        b'["01a227a6-0533-7a80-a41f-acf152d76991","2026-11-29T14:12:01.040000Z",'
        b'"2026-11-29T14:12:02Z","a",null,null,null,null,null,null,null,"2001:db8::7",'
        b'null,null,null,{"a":[2.5,null],"b":1},"42"]'
    )
    # A big integer switches to the stdlib writer, still exact and deterministic.
    big = canonical.canonical_row({**row, "metadata": {"n": 2**70}})
    assert b'{"n":1180591620717411303424}' in big and b'"2026-11-29T14:12:01.040000Z"' in big
