"""GET /api/v1/stats (dashboard/api/stats.py): the overview as JSON."""

from __future__ import annotations

from auditq.client import AuditClient
from auditq.devtools.embedded import free_port
from tests.dashboard.helpers import API_TOKEN, INGEST_TOKEN


def test_stats_with_the_api_token(client, make_settings, redis_client):
    AuditClient(make_settings(), redis_client=redis_client).log_many(
        [{"action": "a"}, {"action": "b"}]
    )
    response = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 200
    body = response.json
    assert body["queue"]["length"] == 2
    assert body["queue"]["dead_letters"] == 0
    assert body["totals"]["enqueued"] == 2
    assert set(body["drops"]) == {"queue_full", "redis_unavailable", "direct_failed"}
    assert body["workers"] == {"alive": 0, "stale": 0, "total": 0}
    assert len(body["series"]) == 60 and "counters" not in body["series"][0]


def test_stats_with_a_session_and_refused_with_another_token(admin, client):
    assert admin.get("/api/v1/stats?range=24h").json["range"] == "24h"
    assert admin.get("/api/v1/stats?range=7d").status_code == 400
    wrong = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {INGEST_TOKEN}"})
    assert wrong.status_code == 401


def test_stats_with_redis_down_is_503(make_app):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get(
        "/api/v1/stats", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert response.status_code == 503
    assert response.json["redis"]["ok"] is False
