"""POST /api/v1/events (dashboard/api/events.py): HTTP ingest through the real queue."""

from __future__ import annotations

import http.client
import json
import uuid

import psycopg
import pytest

from auditq.devtools.embedded import free_port
from dashboard.api.events import MAX_EVENTS, body_limit
from tests.dashboard.helpers import INGEST_TOKEN, LiveServer, drain_into_store

AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def post(client, body, headers=None):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        "/api/v1/events",
        data=data,
        headers={**AUTH, **(headers or {})},
        content_type="application/json",
    )


def test_an_event_from_a_plain_http_client_reaches_audit_logs(app, redis_client, keys, clean_db):
    server = LiveServer(app).start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        body = json.dumps(
            {
                "action": "invoice.paid",
                "actor_id": "u_42",
                "ip": "203.0.113.9",
                "metadata": {"amount": 1200},
            }
        )
        conn.request(
            "POST",
            "/api/v1/events",
            body=body,
            headers={"Content-Type": "application/json", **AUTH},
        )
        response = conn.getresponse()
        reply = json.loads(response.read())
        conn.close()
    finally:
        server.stop()
    assert response.status == 202
    assert reply["outcomes"] == ["queued"]
    (event_id,) = reply["ids"]

    assert drain_into_store(redis_client, keys, clean_db) == 1
    with psycopg.connect(clean_db) as conn:
        row = conn.execute(
            "select action, actor_id, host(ip), metadata, ingest_path from public.audit_logs"
            " where id = %s",
            (uuid.UUID(event_id),),
        ).fetchone()
    assert row == ("invoice.paid", "u_42", "203.0.113.9", {"amount": 1200}, "queue")


def test_a_list_of_events_is_accepted_in_one_request(client, redis_client, keys):
    response = post(client, [{"action": "a"}, {"action": "b", "category": "normal"}])
    assert response.status_code == 202
    assert response.json["outcomes"] == ["queued", "queued"]
    assert redis_client.xlen(keys.stream) == 2


def test_secrets_in_metadata_are_redacted_before_they_are_queued(client, redis_client, keys):
    body = {"action": "a", "metadata": {"user": {"Password": "hunter2"}, "access_token": "t"}}
    assert post(client, body).status_code == 202
    ((_, fields),) = redis_client.xrange(keys.stream)
    assert json.loads(fields[b"event"])["metadata"] == {
        "user": {"Password": "[redacted]"},
        "access_token": "[redacted]",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"actor_id": "u1"}, "action"),
        ({"action": "a", "outcome": "maybe"}, "outcome"),
        ({"action": "a", "occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"action": "a", "ip": "not-an-ip"}, "ip"),
        ({"action": "a", "metadata": [1, 2]}, "metadata"),
        ({"action": "a", "colour": "red"}, "colour"),
        ("just a string", "event"),
        # What Postgres refuses is refused here, not queued and dead-lettered later.
        ({"action": "a", "actor_id": "u\u00001"}, "actor_id"),
        ({"action": "a", "metadata": {"k\u0000": 1}}, "metadata"),
        ({"action": "a", "ip": "fe80::1%eth0"}, "ip"),
        ({"action": "a", "metadata": {"x": float("nan")}}, "metadata"),
        ({"action": "a", "metadata": {"x": float("inf")}}, "metadata"),
        ({"action": "a", "metadata": json.loads('{"a":' * 100 + "1" + "}" * 100)}, "metadata"),
        ({"action": "a", "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
        ({"action": "a", "occurred_at": "9999-12-31T23:59:59-14:00"}, "occurred_at"),
    ],
)
def test_a_malformed_event_is_400_naming_the_field(client, redis_client, keys, body, field):
    response = post(client, [{"action": "fine"}, body])
    assert response.status_code == 400
    assert response.json["field"] == field
    assert response.json["index"] == 1
    assert redis_client.xlen(keys.stream) == 0  # nothing from a bad request is queued


def test_a_body_that_is_not_json_is_400(client):
    response = post(client, b"{not json")
    assert response.status_code == 400
    assert response.json["field"] == "body"
    assert post(client, []).status_code == 400
    assert post(client, "[" * 200_000).status_code == 400  # too deep to parse


def test_an_oversized_event_is_413(client, redis_client, keys):
    response = post(client, {"action": "big", "metadata": {"blob": "x" * 70_000}})
    assert response.status_code == 413
    assert response.json["field"] == "event"
    assert redis_client.xlen(keys.stream) == 0


def test_the_first_refused_event_in_request_order_is_named(client, redis_client, keys):
    big = {"action": "big", "metadata": {"blob": "x" * 70_000}}
    response = post(client, [{"action": "fine"}, big, {"actor_id": "no action"}])
    assert response.status_code == 413
    assert response.json["index"] == 1 and response.json["field"] == "event"
    response = post(client, [{"action": "fine"}, {"actor_id": "no action"}, big])
    assert response.status_code == 400
    assert response.json["index"] == 1 and response.json["field"] == "action"
    assert redis_client.xlen(keys.stream) == 0


def test_an_oversized_body_is_413(client, redis_client, keys):
    limit = body_limit(65_536)
    body = json.dumps([{"action": "a", "metadata": {"p": "y" * 60_000}}] * (limit // 60_000 + 2))
    assert len(body) > limit
    assert post(client, body).status_code == 413
    too_many = post(client, [{"action": "a"}] * (MAX_EVENTS + 1))
    assert too_many.status_code == 413
    assert redis_client.xlen(keys.stream) == 0


def test_a_full_queue_is_429_with_what_was_accepted(make_app, redis_client):
    app = make_app(max_queue=2)
    keys = app.extensions["auditq"].keys
    response = post(app.test_client(), [{"action": f"a{i}"} for i in range(3)])
    assert response.status_code == 429
    assert response.headers["Retry-After"]
    assert response.json["outcomes"] == ["queued", "queued", "dropped"]
    assert response.json["reasons"][2] == "queue_full"
    assert redis_client.xlen(keys.stream) == 2


def test_redis_down_is_503(make_app):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = post(app.test_client(), {"action": "a"})
    assert response.status_code == 503
    assert response.json["outcomes"] == ["dropped"]
    assert response.headers["Retry-After"]


def test_a_wrong_or_missing_token_is_401_and_a_session_is_not_enough(client, admin):
    assert client.post("/api/v1/events", json={"action": "a"}).status_code == 401
    wrong = client.post(
        "/api/v1/events", json={"action": "a"}, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    assert admin.post("/api/v1/events", json={"action": "a"}).status_code == 401


def test_the_content_type_must_be_json(client):
    response = client.post(
        "/api/v1/events", data='{"action": "a"}', headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_a_chunked_body_over_the_limit_is_413_not_invalid_json(app, redis_client, keys):
    limit = body_limit(65_536)
    body = json.dumps([{"action": "a", "metadata": {"p": "y" * 50_000}}] * (limit // 50_000 + 2))
    server = LiveServer(app).start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        replies = []
        for payload in (json.dumps([{"action": "small"}]), body):
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            chunks = (payload[i : i + 65_536].encode() for i in range(0, len(payload), 65_536))
            conn.request(
                "POST", "/api/v1/events", body=chunks, encode_chunked=True,
                headers={"Content-Type": "application/json", **AUTH},
            )  # fmt: skip
            response = conn.getresponse()
            replies.append((response.status, json.loads(response.read())))
            conn.close()
    finally:
        server.stop()
    assert replies[0][0] == 202  # a chunked body that fits is read whole
    assert replies[1] == (413, {"error": "body too large", "limit_bytes": limit})
    assert redis_client.xlen(keys.stream) == 1
