"""Sealing and verifying on both stores (psycopg, and supabase-py through real PostgREST)."""

from __future__ import annotations

import threading
from uuid import UUID

import psycopg
import pytest

from auditq.config import Settings
from auditq.seals import signing
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import NoSeals, verify
from auditq.stores.postgres import PostgresStore
from tests.auditq.seals.helpers import events, superuser


def kinds(report):
    return sorted((f.kind, f.seal_no, f.row_id) for f in report.findings)


def test_verify_is_clean_after_sealing_everything(store, signer, checker):
    batch = events(120)
    store.insert_events(batch[:70])
    store.insert_events(batch[70:])
    result = seal_pass(store, signer, grace=0, max_rows=50)
    assert result.rows == 120
    report = verify(store, checker, expect_head=result.head.hex())
    assert report.ok, report.findings
    assert (report.rows, report.unsealed, report.head) == (120, 0, result.head.hex())
    # A seal ends only between transactions: the 70-row batch is not split.
    assert report.seals == 2


def test_a_second_pass_with_nothing_new_writes_no_seal(store, signer, checker):
    store.insert_events(events(5))
    assert seal_pass(store, signer, grace=0).seals == 1
    assert seal_pass(store, signer, grace=0).seals == 0
    store.insert_events(events(3, start=5))
    assert seal_pass(store, signer, grace=0).rows == 3
    report = verify(store, checker)
    assert report.ok and report.seals == 2 and report.rows == 8


def test_rows_inside_the_grace_period_wait(store, signer, checker):
    store.insert_events(events(4))
    assert seal_pass(store, signer, grace=3600).seals == 0
    assert store.unsealed(0)[0] == 4


def test_a_row_committed_late_falls_into_a_later_seal(store, signer, checker, clean_db):
    # Transaction A inserts first and stays open; B inserts after it and commits.
    with psycopg.connect(clean_db) as held:
        held.execute(
            "insert into audit_logs (id, occurred_at, action)"
            " values (gen_random_uuid(), now(), 'x')"
        )  # A: a transaction is open (psycopg does not autocommit)
        store.insert_events(events(3))  # B commits while A is open
        first = seal_pass(store, signer, grace=0)
        # B's rows have a txid above A's, and A's is the horizon: nothing past it is final.
        assert first.rows == 0
        held.commit()
    second = seal_pass(store, signer, grace=0)
    assert second.rows == 4
    report = verify(store, checker)
    assert report.ok and report.rows == 4 and report.unsealed == 0


def test_tampering_is_caught_and_named(store, signer, checker, clean_db):
    batch = events(30)
    store.insert_events(batch)
    seal_pass(store, signer, grace=0)
    edited, deleted = str(batch[3].id), str(batch[7].id)
    forged = "0190b7a4-0000-7000-8000-000000000001"
    with superuser(clean_db) as conn:
        conn.execute("create temp table saved as select * from audit_logs where id = %s", [deleted])
        conn.execute("update audit_logs set action = 'user.nothing' where id = %s", [edited])
        conn.execute("delete from audit_logs where id = %s", [deleted])
        sealed_txid = conn.execute("select min(txid)::text from audit_logs").fetchone()[0]
        conn.execute(
            "insert into audit_logs (id, occurred_at, action, txid)"
            " values (%s, now(), 'user.forged', %s::xid8)",
            [forged, sealed_txid],
        )
        report = verify(store, checker)
        assert not report.ok
        assert kinds(report) == sorted(
            [("modified", 1, edited), ("missing", 1, deleted), ("unexpected", 1, forged)]
        )
        # Undo all three: verify is clean again.
        conn.execute("update audit_logs set action = 'user.role_change' where id = %s", [edited])
        conn.execute("insert into audit_logs select * from saved")
        conn.execute("delete from audit_logs where id = %s", [forged])
    assert verify(store, checker).ok


def test_resealing_with_another_key_is_caught(store, signer, checker, clean_db):
    store.insert_events(events(10))
    head = seal_pass(store, signer, grace=0).head.hex()
    with superuser(clean_db) as conn:
        conn.execute("delete from audit_seals")
    other = signing.signer(Settings(seal_key=signing.generate().private))
    seal_pass(store, other, grace=0)
    report = verify(store, checker, expect_head=head)
    assert {f.kind for f in report.findings} == {"bad_signature", "head"}
    assert [f.seal_no for f in report.findings if f.kind == "bad_signature"] == [1]


def test_an_edited_or_removed_seal_breaks_the_chain(store, signer, checker, clean_db):
    store.insert_events(events(6))
    seal_pass(store, signer, grace=0)
    store.insert_events(events(6, start=6))
    seal_pass(store, signer, grace=0)
    store.insert_events(events(6, start=12))
    seal_pass(store, signer, grace=0)
    with superuser(clean_db) as conn:
        conn.execute(
            "update audit_seals set sealed_at = sealed_at - interval '1 day' where seal_no = 1"
        )
        conn.execute("delete from audit_seals where seal_no = 2")
    found = {(f.kind, f.seal_no) for f in verify(store, checker).findings}
    assert ("bad_seal", 1) in found and ("bad_signature", 1) not in found
    assert ("broken_link", 3) in found


def test_verify_without_seals_refuses_to_say_intact(store, checker):
    store.insert_events(events(2))
    with pytest.raises(NoSeals):
        verify(store, checker)


def test_two_concurrent_passes_leave_one_chain(pg_dsn, postgrest, clean_db, signer, checker):
    from auditq.stores.supabase import SupabaseStore

    writer = PostgresStore(clean_db)
    for i in range(10):
        writer.insert_events(events(40, start=40 * i))
    stores = [PostgresStore(clean_db), SupabaseStore(postgrest.url, postgrest.service_key)]
    results = []
    barrier = threading.Barrier(2)

    def run(s):
        barrier.wait()
        results.append(seal_pass(s, signer, grace=0, max_rows=40))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verify(writer, checker)
    assert report.ok, report.findings
    assert report.rows == 400 and report.unsealed == 0
    assert report.seals == 10 == sum(r.seals for r in results)
    with psycopg.connect(clean_db) as conn:
        numbers = [r[0] for r in conn.execute("select seal_no from audit_seals order by 1")]
    assert numbers == list(range(1, 11))
    for s in (*stores, writer):
        s.close()


def test_leaves_name_rows_by_uuid(store, signer):
    batch = events(3)
    store.insert_events(batch)
    seal_pass(store, signer, grace=0)
    (seal,) = store.list_seals(0, 10)
    ids = {UUID(bytes=seal["leaves"][i : i + 16]) for i in range(0, 3 * 48, 48)}
    assert ids == {e.id for e in batch}


def test_rows_are_read_in_txid_order_across_a_digit_boundary(store, clean_db):
    # Regression: ordering by the txid selected as text put 1000 before 999, so paged reads
    # went back and read rows twice (verify then called them "unexpected").
    batch = events(4)
    store.insert_events(batch)
    with superuser(clean_db) as conn:
        for event, txid in zip(batch, ("999", "999", "1000", "1001"), strict=True):
            conn.execute("update audit_logs set txid = %s::xid8 where id = %s", [txid, event.id])
    read, after = [], None
    while page := store.sealable_rows(0, 2000, after, 1):
        read.append((int(page[0]["txid"]), str(page[0]["id"])))
        after = read[-1]
    assert [txid for txid, _ in read] == [999, 999, 1000, 1001]
    assert len({row_id for _, row_id in read}) == 4
