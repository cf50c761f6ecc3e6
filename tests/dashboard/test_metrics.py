"""/metrics (dashboard/metrics.py): Prometheus text read from Redis at scrape time."""

from __future__ import annotations

import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from auditq.client import AuditClient
from auditq.stats import Stats, latency_field
from tests.dashboard.helpers import METRICS_TOKEN
from worker.heartbeat import Heartbeat, WorkerStatus

AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        families[family.name] = family.samples
    return families


def value(families, name, sample_name=None, **labels):
    family = families[name]
    for sample in family:
        if (sample_name is None or sample.name == sample_name) and all(
            sample.labels.get(k) == v for k, v in labels.items()
        ):
            return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_carry_queue_counters_drops_failures_and_workers(
    make_app, make_settings, redis_client
):
    app = make_app(max_queue=5)
    settings = make_settings(max_queue=5)
    keys = app.extensions["auditq"].keys
    producer = AuditClient(settings, redis_client=redis_client)
    results = producer.log_many([{"action": f"a.{i}"} for i in range(7)])
    assert [r.outcome for r in results].count("dropped") == 2
    Stats(redis_client, keys).incr(
        {
            "inserted": 40,
            "batches": 3,
            "failed_batches": 2,
            "retried": 4,
            "dead_lettered": 1,
            "batch_latency_ms_sum": 180,
            latency_field(20): 2,
            latency_field(140): 1,
        }
    )
    redis_client.xadd(keys.dead, {"event": "{}", "reason": "bad"})
    live = WorkerStatus(stopping=threading.Event(), batch_size=500, host="w1", pid=11)
    Heartbeat(redis_client, keys, live, ttl=30).beat()
    redis_client.zadd(keys.workers, {"w2:22": time.time() - 600})  # killed long ago

    families = scrape(app.test_client())

    assert value(families, "auditq_redis_up") == 1
    assert value(families, "auditq_queue_length") == 5
    assert value(families, "auditq_queue_lag_seconds") >= 0
    assert value(families, "auditq_dead_letters") == 1
    assert value(families, "auditq_events_enqueued", "auditq_events_enqueued_total") == 5
    assert value(families, "auditq_events_dropped", reason="queue_full") == 2
    assert value(families, "auditq_events_dropped", reason="redis_unavailable") == 0
    assert value(families, "auditq_events_inserted") == 40
    assert value(families, "auditq_batches_failed") == 2
    assert value(families, "auditq_batches_retried") == 4
    assert value(families, "auditq_events_dead_lettered") == 1
    assert (
        value(families, "auditq_batch_duration_seconds", "auditq_batch_duration_seconds_count") == 3
    )
    assert value(families, "auditq_batch_duration_seconds", le="0.025") == 2
    assert value(families, "auditq_batch_duration_seconds", le="+Inf") == 3
    assert value(families, "auditq_workers_alive") == 1
    assert value(families, "auditq_worker_up", worker="w1:11") == 1
    assert value(families, "auditq_worker_up", worker="w2:22") == 0
    assert value(families, "auditq_worker_heartbeat_age_seconds", worker="w2:22") >= 600
    assert value(families, "auditq_worker_batch_size", worker="w1:11") == 500


def test_counters_are_counters(client):
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert "# TYPE auditq_events_enqueued_total counter" in text
    assert "# TYPE auditq_events_dropped_total counter" in text
    assert "# TYPE auditq_queue_length gauge" in text


def test_a_scrape_with_redis_down_says_so_and_still_answers(make_app):
    from auditq.devtools.embedded import free_port

    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    families = scrape(app.test_client())
    assert value(families, "auditq_redis_up") == 0
    assert "auditq_queue_length" not in families
