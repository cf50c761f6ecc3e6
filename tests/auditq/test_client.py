"""AuditClient against real Redis, Postgres and PostgREST."""

import json
import threading
import time

import psycopg
import pytest

from auditq.client import AuditClient, AuditUnavailable
from auditq.config import load_settings
from auditq.events import EventError
from tests.auditq.helpers import rows_with, supabase_settings


def test_ten_thousand_logs_make_ten_thousand_entries_that_parse_back(redis_url):
    client = AuditClient(load_settings(redis_url=redis_url))
    sent = {}
    for i in range(10_000):
        metadata = {"n": i, "note": "ünïcode ✓"}
        result = client.log("user.login", actor_id=f"u_{i}", ip="2001:db8::1", metadata=metadata)
        assert result.outcome == "queued"
        sent[result.id] = (f"u_{i}", metadata)
    entries = client.redis.xrange("audit:events")
    assert len(entries) == 10_000
    for _, fields in entries:
        event = json.loads(fields[b"event"])
        assert (event["actor_id"], event["metadata"]) == sent[event["id"]]
        assert event["action"] == "user.login" and event["ip"] == "2001:db8::1"


def test_log_many_enqueues_in_one_call(redis_url):
    client = AuditClient(load_settings(redis_url=redis_url))
    results = client.log_many([{"action": "a"}, {"action": "b", "target_id": "t"}])
    assert [r.outcome for r in results] == ["queued", "queued"]
    assert client.redis.xlen("audit:events") == 2


def test_invalid_events_raise_before_anything_is_sent(redis_url):
    client = AuditClient(load_settings(redis_url=redis_url))
    with pytest.raises(EventError) as caught:
        client.log_many([{"action": "ok"}, {"action": "bad", "ip": "nope"}])
    assert caught.value.field == "ip"
    assert client.redis.xlen("audit:events") == 0


def test_past_the_bound_normal_events_are_dropped_and_counted(redis_url):
    client = AuditClient(load_settings(redis_url=redis_url, max_queue=1000))
    outcomes = [client.log("bulk.event").outcome for _ in range(1200)]
    assert outcomes.count("queued") == 1000
    assert outcomes.count("dropped") == 200
    assert client.stats.totals()["dropped_queue_full"] == 200
    assert client.log("bulk.event").reason == "queue_full"


def test_past_the_bound_critical_events_are_still_written(redis_url, postgrest, pg_dsn, clean_db):
    client = AuditClient(supabase_settings(postgrest, redis_url, max_queue=1000))
    client.log_many([{"action": "fill"}] * 1000)
    result = client.log("user.ban", category="critical", target_id="u_7")
    assert result.outcome == "written"
    assert rows_with(pg_dsn, [result.id]) == [(result.id, "direct")]
    assert client.stats.totals()["direct_written"] == 1


def test_block_waits_and_succeeds_once_room_appears(redis_url):
    client = AuditClient(
        load_settings(redis_url=redis_url, max_queue=1000, overflow="block", block_timeout=5)
    )
    client.log_many([{"action": "fill"}] * 1000)
    first = client.redis.xrange("audit:events", count=1)[0][0]
    threading.Timer(0.3, client.redis.xdel, args=("audit:events", first)).start()
    result = client.log("waits.for.room")
    assert result.outcome == "queued"
    assert client.redis.xlen("audit:events") == 1000


def test_block_gives_up_after_its_timeout(redis_url):
    client = AuditClient(
        load_settings(redis_url=redis_url, max_queue=5, overflow="block", block_timeout=0.2)
    )
    client.log_many([{"action": "fill"}] * 5)
    result = client.log("no.room")
    assert (result.outcome, result.reason) == ("dropped", "queue_full")
    assert client.stats.totals()["dropped_queue_full"] == 1


def test_overflow_direct_writes_to_the_store(redis_url, postgrest, pg_dsn, clean_db):
    client = AuditClient(supabase_settings(postgrest, redis_url, max_queue=2, overflow="direct"))
    results = client.log_many([{"action": "x"}] * 3)
    assert [r.outcome for r in results] == ["queued", "queued", "written"]
    assert rows_with(pg_dsn, [results[2].id]) == [(results[2].id, "direct")]


def test_a_critical_event_lands_through_supabase_py(redis_url, postgrest, pg_dsn, clean_db):
    client = AuditClient(supabase_settings(postgrest, redis_url))
    result = client.log("user.ban", category="critical", actor_id="u_42", metadata={"r": "spam"})
    assert result.outcome == "written"
    assert rows_with(pg_dsn, [result.id]) == [(result.id, "direct")]
    assert client.redis.xlen("audit:events") == 0


def test_with_postgrest_stopped_a_critical_event_is_deferred_to_the_stream(
    redis_url, postgrest, pg_dsn, clean_db
):
    client = AuditClient(supabase_settings(postgrest, redis_url, direct_timeout=2))
    postgrest.server.stop()
    try:
        result = client.log("user.ban", category="critical", target_id="u_7")
    finally:
        postgrest.server.start()
    assert (result.outcome, result.reason) == ("deferred", "store_unavailable")
    (_, fields), *_ = client.redis.xrange("audit:events")
    assert json.loads(fields[b"event"])["id"] == result.id
    assert rows_with(pg_dsn, [result.id]) == []
    assert client.stats.totals()["deferred"] == 1


def test_with_redis_stopped_log_returns_within_its_bound(doomed_redis, postgrest, pg_dsn, clean_db):
    client = AuditClient(supabase_settings(postgrest, doomed_redis.url, redis_timeout=0.1))
    client.log("warm.up")
    client.log("warm.up", category="critical")
    doomed_redis.stop()

    started = time.monotonic()
    normal = client.log("user.login")
    normal_took = time.monotonic() - started
    started = time.monotonic()
    critical = client.log("user.ban", category="critical")
    critical_took = time.monotonic() - started

    assert (normal.outcome, normal.reason) == ("dropped", "redis_unavailable")
    assert critical.outcome == "written"
    assert rows_with(pg_dsn, [critical.id]) == [(critical.id, "direct")]
    # A bound, not a benchmark: generous slack over AUDITQ_REDIS_TIMEOUT for a loaded CI box.
    assert normal_took < 1.0 and critical_took < 2.0


def test_counts_made_while_redis_was_down_arrive_when_it_is_back(doomed_redis):
    client = AuditClient(load_settings(redis_url=doomed_redis.url, redis_timeout=0.1))
    doomed_redis.stop()
    assert client.log("lost").reason == "redis_unavailable"
    doomed_redis.start()
    time.sleep(1.1)  # past the client's back-off window for counters
    assert client.log("after").outcome == "queued"
    assert client.stats.totals()["dropped_redis_unavailable"] == 1


def test_counts_held_while_redis_was_down_arrive_as_the_client_closes(doomed_redis):
    client = AuditClient(load_settings(redis_url=doomed_redis.url, redis_timeout=0.1))
    doomed_redis.stop()
    assert client.log("lost").reason == "redis_unavailable"
    doomed_redis.start()
    client.close()  # within the back-off window: no call after it would have sent them
    reader = AuditClient(load_settings(redis_url=doomed_redis.url))
    assert reader.stats.totals()["dropped_redis_unavailable"] == 1
    reader.close()


def test_critical_with_no_store_and_no_redis_raises(doomed_redis):
    client = AuditClient(load_settings(redis_url=doomed_redis.url, redis_timeout=0.1))
    doomed_redis.stop()
    with pytest.raises(AuditUnavailable):
        client.log("user.ban", category="critical")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"actor_id": "u\u000042"}, "actor_id"),
        ({"ip": "fe80::1%eth0"}, "ip"),
        ({"metadata": {"ratio": float("nan")}}, "metadata"),
        ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        # Python values the client serializes as JSON strings and arrays.
        ({"metadata": {"raw": b"\x00"}}, "metadata"),
        ({"metadata": {"tags": {"a\u0000"}}}, "metadata"),
        ({"metadata": {"pair": ("ok", "n\u0000")}}, "metadata"),
    ],
)
def test_a_critical_event_postgres_would_refuse_raises_instead_of_being_deferred(
    redis_url, postgrest, pg_dsn, clean_db, fields, field
):
    client = AuditClient(supabase_settings(postgrest, redis_url))
    with pytest.raises(EventError) as caught:
        client.log("user.ban", category="critical", **fields)
    assert caught.value.field == field
    with pytest.raises(EventError):
        client.log("user.login", **fields)  # normal: refused, never "queued"
    assert client.redis.xlen("audit:events") == 0
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("select count(*) from public.audit_logs").fetchone()[0] == 0
    client.close()


def test_an_outage_is_logged_once_per_interval_with_a_count_not_once_per_event(
    doomed_redis, caplog
):
    client = AuditClient(load_settings(redis_url=doomed_redis.url, redis_timeout=0.1))
    client.warnings.interval = 3600  # one interval covers the whole outage, however slow
    doomed_redis.stop()
    with caplog.at_level("WARNING", logger="auditq.client"):
        results = [client.log("user.login") for _ in range(3_000)]
        assert {r.reason for r in results} == {"redis_unavailable"}
        during = [r.getMessage() for r in caplog.records]
        doomed_redis.start()
        assert client.log("after").outcome == "queued"
    assert during == ["redis unavailable, normal events dropped: 1 events (ConnectionError)"]
    assert [r.getMessage() for r in caplog.records][1:] == [
        "redis unavailable, normal events dropped: 2999 more events before it recovered"
        " (ConnectionError)"
    ]
    client.close()
