"""GET /metrics: Prometheus text, bearer METRICS_TOKEN.

A custom collector reads Redis at scrape time (the same bounded reads as the overview), so
every dyno serves the same numbers and nothing is kept in process memory. Counters come
from the running totals that producers and workers increment, summed over the shards
(AUDITQ_SHARDS); when Redis is unreachable
the scrape still succeeds with ``auditq_redis_up 0``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from auditq.stats import DROP_REASONS, LATENCY_BUCKETS_MS
from dashboard.access import bearer
from dashboard.resources import Resources, resources

bp = Blueprint("metrics", __name__)

# Counter name (without _total) -> (counters hash field, help)
COUNTERS = {
    "auditq_events_enqueued": ("enqueued", "Events added to the queue (all categories)."),
    "auditq_events_enqueued_critical": ("enqueued_critical", "Critical events queued."),
    "auditq_events_inserted": ("inserted", "Rows inserted into audit_logs by workers."),
    "auditq_events_duplicates": ("duplicates", "Queued events already stored (redelivery)."),
    "auditq_events_direct_written": ("direct_written", "Critical events written directly."),
    "auditq_events_direct_failed": ("direct_failed", "Direct writes that failed."),
    "auditq_events_deferred": ("deferred", "Critical events queued after a direct failure."),
    "auditq_events_dead_lettered": ("dead_lettered", "Events moved to the dead-letter stream."),
    "auditq_batches": ("batches", "Batches the workers stored."),
    "auditq_batches_failed": ("failed_batches", "Batches that failed to store."),
    "auditq_batches_retried": ("retried", "Batch retries after transient errors."),
}


class RedisCollector(Collector):
    def __init__(self, res: Resources):
        self.res = res

    def collect(self) -> Iterator[Metric]:
        res = self.res
        up = GaugeMetricFamily("auditq_redis_up", "1 if Redis answered this scrape.")
        try:
            now = time.time()
            shards = res.shards()
            depth = res.depth(shards, now)
            totals = res.stats(shards).totals()
            workers = res.workers(now)
            memory = res.redis.info("memory").get("used_memory")
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        yield _gauge("auditq_queue_length", "Events waiting in the queue stream.", depth.length)
        yield _gauge(
            "auditq_queue_max", "The queue bound (AUDITQ_MAX_QUEUE).", res.settings.max_queue
        )
        yield _gauge("auditq_queue_shards", "Shards drained (AUDITQ_SHARDS or more).", shards)
        yield _gauge("auditq_queue_lag_seconds", "Age of the oldest queued event.", depth.lag)
        yield _gauge("auditq_dead_letters", "Entries in the dead-letter stream.", depth.dead)
        if memory is not None:
            yield _gauge("auditq_redis_used_memory_bytes", "Redis used_memory.", memory)

        for name, (field, help_text) in COUNTERS.items():
            counter = CounterMetricFamily(name, help_text)
            counter.add_metric([], totals.get(field, 0))
            yield counter
        drops = CounterMetricFamily(
            "auditq_events_dropped", "Events dropped, by reason.", labels=["reason"]
        )
        for reason in DROP_REASONS:
            drops.add_metric([reason], totals.get(f"dropped_{reason}", 0))
        yield drops

        cumulative, buckets = 0.0, []
        for bound in LATENCY_BUCKETS_MS:
            cumulative += totals.get(f"lat_le_{bound}", 0)
            buckets.append((_seconds(bound), cumulative))
        cumulative += totals.get("lat_le_inf", 0)
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily(
            "auditq_batch_duration_seconds",
            "Time to store one batch.",
            buckets=buckets,
            sum_value=totals.get("batch_latency_ms_sum", 0) / 1000,
        )

        alive = sum(1 for w in workers if w["status"] == "alive")
        yield _gauge("auditq_workers_alive", "Workers with a fresh heartbeat.", alive)
        worker_up = GaugeMetricFamily(
            "auditq_worker_up", "1 if the worker's heartbeat is fresh.", labels=["worker"]
        )
        age = GaugeMetricFamily(
            "auditq_worker_heartbeat_age_seconds", "Seconds since its last beat.", labels=["worker"]
        )
        batch = GaugeMetricFamily(
            "auditq_worker_batch_size", "The worker's current batch size.", labels=["worker"]
        )
        for w in workers:
            worker_up.add_metric([w["id"]], 1 if w["status"] == "alive" else 0)
            age.add_metric([w["id"]], round(w["age"], 3))
            if w.get("batch_size") is not None:
                batch.add_metric([w["id"]], w["batch_size"])
        yield worker_up
        yield age
        yield batch


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _seconds(ms: int) -> str:
    return repr(ms / 1000)


def registry_for(res: Resources) -> CollectorRegistry:
    registry = getattr(res, "_metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RedisCollector(res))
        res._metrics_registry = registry  # type: ignore[attr-defined]
    return registry


@bp.route("/metrics")
@bearer("metrics_token")
def metrics() -> Response:
    return Response(generate_latest(registry_for(resources())), content_type=CONTENT_TYPE_LATEST)
