"""/healthz (dashboard/health.py): public, 200 only when Redis and the store both answer."""

from __future__ import annotations

from auditq.devtools.embedded import free_port


def test_healthy_when_redis_and_the_store_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"redis": "ok", "store": "ok"}}


def test_503_naming_redis_when_redis_is_down(make_app):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"].startswith("unreachable")
    assert response.json["checks"]["store"] == "ok"


def test_503_naming_the_store_when_it_is_down_without_leaking_its_url(make_app):
    dsn = f"postgresql://auditq:hunter2@127.0.0.1:{free_port()}/postgres"
    app = make_app(database_url=dsn)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"] == {"redis": "ok", "store": "unreachable (postgres)"}
    assert "hunter2" not in response.get_data(as_text=True)


def test_the_supabase_store_is_checked_through_postgrest(make_app, postgrest):
    app = make_app(
        store="supabase",
        supabase_url=postgrest.url,
        supabase_service_role_key=postgrest.service_key,
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json["checks"]["store"] == "ok"
