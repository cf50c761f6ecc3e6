"""The plain functions the alert engine reads: verify findings, unsealed age, queue gap."""

from __future__ import annotations

import psycopg

from auditq.keys import Keys
from auditq.seals import reconcile, status
from auditq.seals.sealer import seal_pass
from tests.auditq.seals.helpers import events

KEYS = Keys("audit")


def test_unsealed_age_is_zero_when_everything_is_sealed(store, signer, clean_db):
    assert status.unsealed_age_seconds(store) == 0
    store.insert_events(events(3))
    with psycopg.connect(clean_db) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute("update audit_logs set received_at = now() - interval '10 minutes'")
    assert 590 < status.unsealed_age_seconds(store) < 3600
    seal_pass(store, signer, grace=0)
    assert status.unsealed_age_seconds(store) == 0


def test_verify_findings_metric(redis_client):
    assert status.verify_findings(redis_client, KEYS) is None  # never ran: no data
    status.save_verify(redis_client, KEYS, {"running": True})
    assert status.verify_findings(redis_client, KEYS) is None
    findings = [{"kind": "modified"}] * 150
    status.save_verify(redis_client, KEYS, {"ok": False, "findings": findings, "more_findings": 5})
    assert status.verify_findings(redis_client, KEYS) == 155
    assert len(status.last_verify(redis_client, KEYS)["findings"]) == status.MAX_KEPT_FINDINGS
    status.save_verify(redis_client, KEYS, {"ok": False, "error": "no seals", "findings": []})
    assert status.verify_findings(redis_client, KEYS) is None


def test_the_gap_counts_entries_gone_without_a_count(redis_client):
    redis_client.hset(KEYS.counters, mapping={"enqueued": 5, "inserted": 2, "duplicates": 1})
    for _ in range(2):
        redis_client.xadd(KEYS.stream, {"event": "{}"})
    assert reconcile.gap(redis_client, KEYS) == 0
    redis_client.hincrby(KEYS.counters, "enqueued", 3)  # 3 more in, nothing out, not queued
    assert reconcile.gap(redis_client, KEYS) == 3
