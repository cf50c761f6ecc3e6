"""log_many's fast path (auditq.bulk.encode_batch) through the client, on every path an
event can take: queued, written direct as critical, written direct past the bound."""

import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg

from auditq.client import AuditClient
from auditq.redact import REDACTED
from tests.auditq.helpers import supabase_settings

WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=2)))


def test_a_mixed_call_keeps_each_events_id_and_values_on_every_path(
    redis_url, postgrest, pg_dsn, clean_db
):
    client = AuditClient(supabase_settings(postgrest, redis_url, max_queue=2, overflow="direct"))
    sent = [
        {"metadata": {"token": "t0", "n": 0}, "actor_id": "u_0", "action": "a"},
        {"action": "b", "category": "critical", "occurred_at": WHEN, "tenant_id": "t_1"},
        {"action": "c", "actor_id": "u_2", "metadata": {"n": 2}},
        {"action": "d", "actor_id": "u_3", "metadata": {"Token": "t3", "n": 3}},
    ]
    before = datetime.now(UTC)
    results = client.log_many(sent)
    after = datetime.now(UTC)
    assert [r.outcome for r in results] == ["queued", "written", "queued", "written"]

    queued = [json.loads(f[b"event"]) for _, f in client.redis.xrange("audit:events")]
    assert [e["id"] for e in queued] == [results[0].id, results[2].id]
    assert [list(e) for e in queued] == [
        ["id", "occurred_at", "action", "category", "actor_id", "metadata"]
    ] * 2  # the model's field order, whatever the producer's
    assert queued[0]["metadata"] == {"token": REDACTED, "n": 0}

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "select id::text, action, actor_id, tenant_id, occurred_at, metadata, ingest_path"
            " from public.audit_logs order by action"
        ).fetchall()
    assert rows[0] == (results[1].id, "b", None, "t_1", WHEN.astimezone(UTC), {}, "direct")
    event_id, action, actor_id, tenant_id, occurred_at, metadata, path = rows[1]
    assert (event_id, action, actor_id, tenant_id) == (results[3].id, "d", "u_3", None)
    assert (metadata, path) == ({"Token": REDACTED, "n": 3}, "direct")
    assert before <= occurred_at <= after
