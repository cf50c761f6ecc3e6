"""The dashboard's numbers over AUDITQ_SHARDS streams on a real Redis Cluster: /api/v1/stats
and /metrics add the shards up, and read every shard any process used."""

from __future__ import annotations

from auditq.client import AuditClient
from auditq.config import load_settings
from tests.dashboard.helpers import API_TOKEN, METRICS_TOKEN

PREFIX = "{audit}"


def test_stats_and_metrics_sum_every_shard_any_process_used(make_app, cluster_url):
    # The dashboard is configured with 3 shards; a producer already uses 6.
    app = make_app(redis_url=cluster_url, prefix=PREFIX, shards=3)
    producer = AuditClient(load_settings(redis_url=cluster_url, prefix=PREFIX, shards=6))
    results = producer.log_many([{"action": "a", "tenant_id": f"t{i}"} for i in range(120)])
    assert {r.outcome for r in results} == {"queued"}
    producer.close()

    client = app.test_client()
    body = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {API_TOKEN}"}).json
    assert body["queue"]["length"] == 120
    assert body["totals"]["enqueued"] == 120
    assert body["rates"]["enqueued_per_minute"] == 120
    assert len(body["shards"]) == 6
    assert sum(s["enqueued"] for s in body["shards"]) == 120
    assert sum(1 for s in body["shards"] if s["enqueued"]) >= 2

    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "auditq_queue_length 120.0" in text
    assert "auditq_events_enqueued_total 120.0" in text
    assert "auditq_queue_shards 6.0" in text
