"""The values alert rules watch, read from Redis in a few bounded round trips.

Metric names are part of the API (rules store them). Each read is O(1) or O(log n) per
shard (AUDITQ_SHARDS; the queue figures are summed over them, ``auditq.shards``): XLEN of
the stream and the dead-letter stream, XRANGE COUNT 1 (the oldest queued entry), HGETALL of
two per-minute hashes; and once, ZCOUNT and ZRANGE 0 0 on the workers sorted set.

"Per minute" means the last 60 seconds up to ``now``, as everywhere
(``auditq.stats.window_weights``); who is alive follows the heartbeat contract
(``auditq.heartbeat``).

The seals' metrics come from ``auditq.seals``: ``verify_findings`` and ``reconcile_gap`` from
Redis (two more small round trips), ``unsealed_age_seconds`` from the store
(``store_metrics``, which the evaluator calls with its store).

A value of ``None`` means "no data" (a rule's ``no_data`` setting decides what that means):
``heartbeat_age_seconds`` without any registered worker, ``batch_latency_p95_ms`` without a
batch in the window, and every metric but ``redis_up`` (then 0) when Redis cannot be read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from auditq.heartbeat import count_alive
from auditq.keys import Keys, shard_keys
from auditq.seals import reconcile, status
from auditq.shards import last_two_minutes, queue_depth, shard_count
from auditq.stats import (
    LATENCY_BUCKETS_MS,
    dropped,
    last_minute,
    latency_percentile,
    window_weights,
)
from auditq.stores import Store, StoreError


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    help: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("queue_length", "Queue length", "events", "Events waiting in the stream (XLEN)."),
        Metric(
            "lag_seconds",
            "Lag",
            "s",
            "Age of the oldest event still queued (0 when the queue is empty).",
        ),
        Metric(
            "drops_per_minute",
            "Drops per minute",
            "events/min",
            "Events dropped in the last 60 s: queue full, Redis unavailable, direct write failed.",
        ),
        Metric(
            "failed_batches_per_minute",
            "Failed batches per minute",
            "batches/min",
            "Worker batches that failed to insert in the last 60 s.",
        ),
        Metric("dead_letters", "Dead letters", "events", "Entries in the dead-letter stream."),
        Metric(
            "workers_alive",
            "Live workers",
            "workers",
            "Workers whose last heartbeat is younger than AUDITQ_HEARTBEAT_TTL.",
        ),
        Metric(
            "heartbeat_age_seconds",
            "Oldest heartbeat age",
            "s",
            "Seconds since the oldest registered worker's last heartbeat (no data: no"
            " workers). A worker killed without a clean exit counts until"
            " AUDITQ_WORKER_FORGET_AFTER.",
        ),
        Metric(
            "batch_latency_p95_ms",
            "Batch latency p95",
            "ms",
            "95th percentile batch insert time in the last 60 s (bucket upper bound).",
        ),
        Metric(
            "redis_up",
            "Redis reachable",
            "",
            "1 when the evaluator could read Redis this run, 0 when it could not.",
        ),
        Metric(
            "verify_findings",
            "Seal verify findings",
            "findings",
            "Findings of the last seal verify run (no data: verify never ran or could not).",
        ),
        Metric(
            "reconcile_gap",
            "Events unaccounted for",
            "events",
            "Events that left the queue without being stored, duplicated or dead-lettered.",
        ),
        Metric(
            "unsealed_age_seconds",
            "Oldest unsealed row",
            "s",
            "Seconds the oldest row no seal covers has waited (no data: the store did not"
            " answer, or AUDITQ_SEAL_KEY is unset so nothing seals).",
        ),
        Metric(
            "critical_deferred",
            "Critical events deferred",
            "events/min",
            "Critical events whose direct write failed and were queued, in the last 60 s.",
        ),
    )
}


# Read from the store, not Redis: ``collect`` leaves them None, ``store_metrics`` fills them.
STORE_METRICS = ("unsealed_age_seconds",)


def collect(
    client: redis.Redis,
    keys: Keys,
    heartbeat_ttl: float,
    now: float | None = None,
    shards: int = 1,
) -> dict[str, float | None]:
    """Every metric at ``now`` (default: the time now), summed over the shards (this
    process's AUDITQ_SHARDS, or the highest any process used). When Redis cannot be read,
    ``redis_up`` is 0 and every other metric None (no data)."""
    now = time.time() if now is None else now
    minute, weight = window_weights(now)
    try:
        shards = shard_count(client, keys, shards)
        depth = queue_depth(client, keys, shards, now)
        current, previous = last_two_minutes(client, keys, shards, minute)
        pipe = client.pipeline(transaction=False)
        count_alive(pipe, keys, heartbeat_ttl, now)
        pipe.zrange(keys.workers, 0, 0, withscores=True)
        alive, oldest = pipe.execute()
        seals = _seal_metrics(client, keys, shards)
    except redis.RedisError:
        return dict.fromkeys(METRICS) | {"redis_up": 0.0}
    window = last_minute(current, previous, weight)

    heartbeat_age = max(0.0, now - oldest[0][1]) if oldest else None
    p95 = latency_percentile(window, 0.95)
    if p95 is not None and p95 == float("inf"):
        p95 = LATENCY_BUCKETS_MS[-1] + 1  # "more than the top bucket", kept JSON-safe
    values = dict.fromkeys(STORE_METRICS) | seals
    return values | {
        "queue_length": float(depth.length),
        "lag_seconds": round(depth.lag, 3),
        "drops_per_minute": _round(dropped(window)),
        "failed_batches_per_minute": _round(window.get("failed_batches", 0)),
        "dead_letters": float(depth.dead),
        "workers_alive": float(alive),
        "heartbeat_age_seconds": None if heartbeat_age is None else round(heartbeat_age, 3),
        "batch_latency_p95_ms": None if p95 is None else float(p95),
        "critical_deferred": _round(window.get("deferred", 0)),
        "redis_up": 1.0,
    }


def _seal_metrics(client: redis.Redis, keys: Keys, shards: int) -> dict[str, float | None]:
    """The seals' health read from Redis (the store's part: ``store_metrics``)."""
    findings = status.verify_findings(client, keys)
    # Per shard: each shard's counters and stream share a hash slot, so each read is atomic.
    gap = sum(reconcile.gap(client, shard) for shard in shard_keys(keys.prefix, shards))
    return {"verify_findings": findings, "reconcile_gap": float(gap)}


def store_metrics(store: Store | None) -> dict[str, float | None]:
    """The metrics read from the store; None (no data) when it has none or does not answer."""
    if store is None:
        return {"unsealed_age_seconds": None}
    try:
        age = status.unsealed_age_seconds(store)
    except StoreError:
        return {"unsealed_age_seconds": None}
    return {"unsealed_age_seconds": round(age, 3)}


def _round(value: float) -> float:
    return round(float(value), 4)
