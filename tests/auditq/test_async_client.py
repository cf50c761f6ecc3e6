"""AsyncAuditClient against real Redis, Postgres and PostgREST: the sync client's outcomes."""

import asyncio
import json

import psycopg
import pytest

from auditq import AsyncAuditClient, AuditClient, AuditUnavailable
from auditq.config import load_settings
from auditq.devtools.embedded import free_port
from auditq.events import EventError
from tests.auditq.helpers import rows_with, supabase_settings


def run(coro):
    return asyncio.run(coro)


async def using(settings, body):
    async with AsyncAuditClient(settings) as client:
        return await body(client)


def test_concurrent_logs_all_land_in_the_stream(redis_url, redis_client):
    async def body(client):
        return await asyncio.gather(
            *(client.log("user.login", actor_id=f"u_{i}", metadata={"n": i}) for i in range(500))
        )

    # What is tested is concurrency, not the timeout: a loaded CI machine may take longer
    # than the default 100 ms to run 500 tasks' worth of script calls.
    settings = load_settings(redis_url=redis_url, redis_timeout=5.0)
    results = run(using(settings, body))
    assert {r.outcome for r in results} == {"queued"}
    events = [json.loads(f[b"event"]) for _, f in redis_client.xrange("audit:events")]
    assert sorted(e["id"] for e in events) == sorted(r.id for r in results)
    assert {e["actor_id"] for e in events} == {f"u_{i}" for i in range(500)}
    assert int(redis_client.hget("audit:counters", "enqueued")) == 500


def test_invalid_events_raise_before_anything_is_sent(redis_url, redis_client):
    async def body(client):
        with pytest.raises(EventError) as caught:
            await client.log_many([{"action": "ok"}, {"action": "bad", "ip": "nope"}])
        return caught.value.field

    assert run(using(load_settings(redis_url=redis_url), body)) == "ip"
    assert redis_client.xlen("audit:events") == 0


def test_past_the_bound_normal_events_are_dropped_and_counted(redis_url, redis_client):
    async def body(client):
        await client.log_many([{"action": "fill"}] * 10)
        return await client.log("one.too.many")

    result = run(using(load_settings(redis_url=redis_url, max_queue=10), body))
    assert (result.outcome, result.reason) == ("dropped", "queue_full")
    assert int(redis_client.hget("audit:counters", "dropped_queue_full")) == 1


def test_block_waits_for_room_without_blocking_the_loop(redis_url, redis_client):
    async def body(client):
        await client.log_many([{"action": "fill"}] * 5)
        first = (await client.redis.xrange("audit:events", count=1))[0][0]

        async def make_room():  # runs on the same loop while log() waits for room
            await asyncio.sleep(0.2)
            await client.redis.xdel("audit:events", first)

        result, _ = await asyncio.gather(client.log("waits.for.room"), make_room())
        return result

    settings = load_settings(redis_url=redis_url, max_queue=5, overflow="block", block_timeout=5)
    assert run(using(settings, body)).outcome == "queued"
    assert redis_client.xlen("audit:events") == 5


def test_block_gives_up_after_its_timeout(redis_url, redis_client):
    async def body(client):
        await client.log_many([{"action": "fill"}] * 5)
        return await client.log("no.room")

    settings = load_settings(redis_url=redis_url, max_queue=5, overflow="block", block_timeout=0.2)
    result = run(using(settings, body))
    assert (result.outcome, result.reason) == ("dropped", "queue_full")
    assert int(redis_client.hget("audit:counters", "dropped_queue_full")) == 1


def test_overflow_direct_writes_to_the_store(redis_url, postgrest, pg_dsn, clean_db):
    async def body(client):
        return await client.log_many([{"action": "x"}] * 3)

    settings = supabase_settings(postgrest, redis_url, max_queue=2, overflow="direct")
    results = run(using(settings, body))
    assert [r.outcome for r in results] == ["queued", "queued", "written"]
    assert rows_with(pg_dsn, [results[2].id]) == [(results[2].id, "direct")]


def test_coalesced_calls_past_the_bound_write_each_callers_own_events_direct(
    redis_url, redis_client, postgrest, pg_dsn, clean_db
):
    async def body(client):
        calls = [[{"action": "x", "actor_id": f"c{c}_{i}"} for i in range(3)] for c in range(4)]
        return await asyncio.gather(*(client.log_many(events) for events in calls))

    settings = supabase_settings(postgrest, redis_url, max_queue=5, overflow="direct")
    calls = run(using(settings, body))

    outcomes = [r.outcome for results in calls for r in results]
    assert outcomes.count("queued") == 5 and outcomes.count("written") == 7
    queued = {json.loads(f[b"event"])["id"] for _, f in redis_client.xrange("audit:events")}
    with psycopg.connect(pg_dsn) as conn:
        stored = dict(conn.execute("select id::text, actor_id from public.audit_logs").fetchall())
    for c, results in enumerate(calls):
        for i, result in enumerate(results):
            # Each result names its own event, wherever it went: the stream or the table.
            if result.outcome == "queued":
                assert result.id in queued and result.id not in stored
            else:
                assert stored[result.id] == f"c{c}_{i}"


def test_critical_with_the_store_up_is_written(
    redis_url, redis_client, postgrest, pg_dsn, clean_db
):
    async def body(client):
        return await asyncio.gather(
            *(client.log("user.ban", category="critical", target_id=f"u_{i}") for i in range(20))
        )

    results = run(using(supabase_settings(postgrest, redis_url), body))
    assert {r.outcome for r in results} == {"written"}
    assert sorted(rows_with(pg_dsn, [r.id for r in results])) == sorted(
        (r.id, "direct") for r in results
    )
    assert redis_client.xlen("audit:events") == 0
    assert int(redis_client.hget("audit:counters", "direct_written")) == 20


def test_critical_with_the_store_down_is_deferred_to_the_stream(
    redis_url, redis_client, postgrest, pg_dsn, clean_db
):
    async def body(client):
        return await client.log("user.ban", category="critical", target_id="u_7")

    postgrest.server.stop()
    try:
        result = run(using(supabase_settings(postgrest, redis_url, direct_timeout=2), body))
    finally:
        postgrest.server.start()
    assert (result.outcome, result.reason) == ("deferred", "store_unavailable")
    (_, fields), *_ = redis_client.xrange("audit:events")
    assert json.loads(fields[b"event"])["id"] == result.id
    assert rows_with(pg_dsn, [result.id]) == []
    assert int(redis_client.hget("audit:counters", "deferred")) == 1


def test_critical_with_the_postgres_store_down_is_deferred(redis_url, redis_client, pg_server):
    # The postgres store (a direct connection) pointed at a port nothing listens on.
    dead = f"postgresql://postgres@{pg_server.host}:{free_port()}/postgres"

    async def body(client):
        return await client.log("user.ban", category="critical")

    settings = load_settings(redis_url=redis_url, database_url=dead, direct_timeout=1)
    assert run(using(settings, body)).outcome == "deferred"
    assert redis_client.xlen("audit:events") == 1


def test_counts_held_while_redis_was_down_arrive_as_the_client_closes(doomed_redis):
    async def outage() -> str | None:
        settings = load_settings(redis_url=doomed_redis.url, redis_timeout=0.1)
        async with AsyncAuditClient(settings) as client:
            doomed_redis.stop()
            result = await client.log("lost")
            doomed_redis.start()
            return result.reason  # closed within the back-off window: no call sent them

    assert run(outage()) == "redis_unavailable"
    reader = AuditClient(load_settings(redis_url=doomed_redis.url))
    assert reader.stats.totals()["dropped_redis_unavailable"] == 1
    reader.close()


def test_critical_with_the_store_and_redis_down_raises(doomed_redis, postgrest):  # noqa: F811
    async def body(client):
        with pytest.raises(AuditUnavailable):
            await client.log("user.ban", category="critical")
        return await client.log("user.login")

    doomed_redis.stop()
    postgrest.server.stop()
    try:
        settings = supabase_settings(postgrest, doomed_redis.url, direct_timeout=1)
        normal = run(using(settings, body))
    finally:
        postgrest.server.start()
    assert (normal.outcome, normal.reason) == ("dropped", "redis_unavailable")


def test_counts_made_while_redis_was_down_arrive_when_it_is_back(doomed_redis):  # noqa: F811
    async def body(client):
        doomed_redis.stop()
        lost = await client.log("lost")
        doomed_redis.start()
        await asyncio.sleep(1.1)  # past the client's back-off window for counters
        after = await client.log("after")
        counters = await client.redis.hgetall("audit:counters")
        return lost, after, counters

    lost, after, counters = run(using(load_settings(redis_url=doomed_redis.url), body))
    assert lost.reason == "redis_unavailable" and after.outcome == "queued"
    assert int(counters[b"dropped_redis_unavailable"]) == 1


def test_the_readme_example_runs(readme_example, stream_events):
    asyncio.run(readme_example("asyncio")["export_report"]("u_42"))
    assert [(e["action"], e.get("actor_id")) for e in stream_events()] == [
        ("report.export", "u_42"),
        ("report.view", None),
        ("report.share", None),
    ]
