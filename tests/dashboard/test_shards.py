"""The dashboard over AUDITQ_SHARDS streams on a real Redis Cluster: /api/v1/stats and
/metrics add the shards up (every shard any process used), and each shard's dead letters
can be handled."""

from __future__ import annotations

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.decoding import decode_entry, derived_id
from auditq.keys import shard_keys
from auditq.queue import connect
from tests.dashboard.helpers import (
    API_TOKEN,
    METRICS_TOKEN,
    add_dead_letter,
    csrf_token,
    login,
)

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
    assert [s["length"] for s in body["shards"]] == [s["enqueued"] for s in body["shards"]]
    assert sum(1 for s in body["shards"] if s["enqueued"]) >= 2

    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "auditq_queue_length 120.0" in text
    assert "auditq_events_enqueued_total 120.0" in text
    assert "auditq_queue_shards 6.0" in text


def test_dead_letters_of_every_shard_can_be_listed_requeued_and_discarded(make_app, cluster_url):
    app = make_app(redis_url=cluster_url, prefix=PREFIX, shards=3)
    admin = app.test_client()
    assert login(admin).status_code == 303
    raw = connect(cluster_url)
    shard2 = shard_keys(PREFIX, 3)[2]
    dead = add_dead_letter(raw, shard2, {"action": "no.id"}, entry_id="1700000000123-4")
    other = add_dead_letter(raw, shard2, {"action": "other.one"})

    assert "per shard: 0 · 0 · 0" in admin.get("/").text  # the overview's breakdown
    index = admin.get("/dead-letters/").text
    assert "Shard 2 (2)" in index and "no.id" not in index  # shard 0's page, with a picker
    page = admin.get("/dead-letters/?shard=2").text
    assert "no.id" in page and f"/dead-letters/{dead}?shard=2" in page
    assert admin.get("/dead-letters/?shard=3").status_code == 404
    assert admin.get(f"/dead-letters/{dead}?shard=2").status_code == 200
    assert admin.get(f"/dead-letters/{dead}").status_code == 404  # not in shard 0's stream

    token = csrf_token(admin)
    response = admin.post(f"/dead-letters/{dead}/requeue?shard=2", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"].endswith("?shard=2")
    ((entry_id, fields),) = [e for keys in shard_keys(PREFIX, 3) for e in raw.xrange(keys.stream)]
    # The id the worker derived in shard 2, so a requeue cannot make a second row.
    assert decode_entry(entry_id.decode(), fields, 65_536).id == derived_id("1700000000123-4", 2)
    admin.post(f"/dead-letters/{other}/discard?shard=2", data={"csrf_token": token})
    assert raw.xlen(shard2.dead) == 0
    raw.close()
