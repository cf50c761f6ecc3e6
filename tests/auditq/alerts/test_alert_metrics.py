"""The metrics rules watch, read from a real Redis that holds what producers and workers wrote."""

import pytest

from auditq.alerts.metrics import METRICS, collect, store_metrics
from auditq.events import AuditEvent
from auditq.keys import shard_keys
from auditq.queue import connect
from auditq.seals.status import save_verify
from auditq.stats import latency_field, window_weights
from auditq.stores.postgres import PostgresStore
from tests.auditq.alerts.helpers import KEYS, set_queue

MINUTE = 29_000_000  # an epoch minute
T = MINUTE * 60.0


def counters(client, minute, **values):
    client.hset(KEYS.minute(minute), mapping=values)


def test_all_metrics_have_values_on_an_idle_system(redis_client):
    values = collect(redis_client, KEYS, heartbeat_ttl=30, now=T)
    assert set(values) == set(METRICS)
    assert values == {
        "queue_length": 0.0,
        "lag_seconds": 0.0,
        "drops_per_minute": 0.0,
        "failed_batches_per_minute": 0.0,
        "dead_letters": 0.0,
        "workers_alive": 0.0,
        "heartbeat_age_seconds": None,
        "batch_latency_p95_ms": None,
        "critical_deferred": 0.0,
        "redis_up": 1.0,
        "verify_findings": None,  # verify never ran
        "reconcile_gap": 0.0,
        "unsealed_age_seconds": None,  # from the store, not Redis (store_metrics)
    }


def test_queue_length_lag_and_dead_letters(redis_client):
    set_queue(redis_client, 7)
    redis_client.xadd(KEYS.dead, {"event": "{}", "reason": "bad"})
    first_ms = int(redis_client.xrange(KEYS.stream, count=1)[0][0].split(b"-")[0])
    values = collect(redis_client, KEYS, 30, now=first_ms / 1000 + 42.5)
    assert values["queue_length"] == 7 and values["dead_letters"] == 1
    assert values["lag_seconds"] == 42.5


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0.0, 3 + 10), (15.0, 3 + 10 * 0.75), (30.0, 3 + 5), (59.0, 3 + 10 / 60)],
)
def test_per_minute_is_the_last_60_seconds_from_two_buckets(redis_client, offset, expected):
    counters(redis_client, MINUTE - 2, dropped_queue_full=1000)  # outside the window
    counters(redis_client, MINUTE - 1, dropped_queue_full=6, dropped_redis_unavailable=4)
    counters(redis_client, MINUTE, dropped_direct_failed=1, dropped_queue_full=2)
    values = collect(redis_client, KEYS, 30, now=T + offset)
    assert values["drops_per_minute"] == pytest.approx(expected, abs=1e-3)
    assert window_weights(T + offset) == (MINUTE, pytest.approx((60 - offset) / 60))


def test_failed_batches_deferred_and_latency(redis_client):
    counters(redis_client, MINUTE, failed_batches=2, deferred=5)
    for ms, n in ((20, 90), (400, 6), (40_000, 4)):
        redis_client.hincrby(KEYS.minute(MINUTE), latency_field(ms), n)
    values = collect(redis_client, KEYS, 30, now=T + 30)
    assert values["failed_batches_per_minute"] == 2
    assert values["critical_deferred"] == 5
    assert values["batch_latency_p95_ms"] == 500
    redis_client.hincrby(KEYS.minute(MINUTE), latency_field(40_000), 100)
    assert collect(redis_client, KEYS, 30, now=T + 30)["batch_latency_p95_ms"] == 30_001


def test_workers_alive_and_the_oldest_heartbeat(redis_client):
    redis_client.zadd(KEYS.workers, {"h:1": T - 2, "h:2": T - 12, "h:3": T - 100})
    values = collect(redis_client, KEYS, heartbeat_ttl=10, now=T)
    assert values["workers_alive"] == 1
    assert values["heartbeat_age_seconds"] == 100


def test_an_unreachable_redis_is_no_data_and_redis_down():
    dead = connect("redis://127.0.0.1:1/0", timeout=0.2)
    values = collect(dead, KEYS, 30, now=T)
    assert values.pop("redis_up") == 0.0
    assert set(values.values()) == {None}


def test_seal_verify_findings_and_the_reconcile_gap(redis_client):
    save_verify(redis_client, KEYS, {"findings": [{"kind": "modified"}] * 3})
    redis_client.hset(KEYS.counters, mapping={"enqueued": 10, "inserted": 6, "duplicates": 1})
    set_queue(redis_client, 1)  # 10 in, 7 out, 1 still queued: 2 unaccounted
    values = collect(redis_client, KEYS, 30, now=T)
    assert values["verify_findings"] == 3
    assert values["reconcile_gap"] == 2
    save_verify(redis_client, KEYS, {"error": "store unreachable"})
    assert collect(redis_client, KEYS, 30, now=T)["verify_findings"] is None


def test_the_age_of_the_oldest_unsealed_row_comes_from_the_store(store):
    assert store_metrics(store) == {"unsealed_age_seconds": 0.0}  # nothing stored
    store.insert_events([AuditEvent(action="probe")])
    assert store_metrics(store)["unsealed_age_seconds"] >= 0.0
    assert store_metrics(None) == {"unsealed_age_seconds": None}  # sealing is off


def test_an_unreachable_store_is_no_data():
    down = PostgresStore("postgresql://auditq@127.0.0.1:1/none", timeout=0.5)
    assert store_metrics(down) == {"unsealed_age_seconds": None}


def test_queue_figures_drops_and_the_gap_are_summed_over_the_shards(redis_client):
    # Three shards, as AUDITQ_SHARDS=3 makes them: shard 0 keeps today's keys.
    shards = shard_keys(KEYS.prefix, 3)
    for n, shard in enumerate(shards, start=1):
        for i in range(n):
            redis_client.xadd(shard.stream, {"event": f'{{"action": "probe", "n": {i}}}'})
        redis_client.xadd(shard.dead, {"event": "{}", "reason": "bad"})
        redis_client.hset(shard.minute(MINUTE), mapping={"dropped_queue_full": n})
        # enqueued = stored + still queued on each shard, except one event lost on shard 2
        redis_client.hset(shard.counters, mapping={"enqueued": 10 + n + (n == 2), "inserted": 10})
    values = collect(redis_client, KEYS, heartbeat_ttl=30, now=T + 59, shards=3)
    assert values["queue_length"] == 6.0
    assert values["dead_letters"] == 3.0
    assert values["drops_per_minute"] == pytest.approx(6.0)
    assert values["reconcile_gap"] == 1.0
    # A process configured with one shard still reads every shard any process used.
    redis_client.set(KEYS.shards, 3)
    assert collect(redis_client, KEYS, heartbeat_ttl=30, now=T + 59)["queue_length"] == 6.0
