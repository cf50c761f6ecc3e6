"""GET /api/v1/events (dashboard/api/events.py): the JSON read API's access, validation and
keyset pages. Personal fields through it are covered in tests/dashboard/test_privacy.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auditq.events import build_event
from auditq.stores.postgres import PostgresStore
from tests.dashboard.helpers import API_TOKEN, INGEST_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def stored(clean_db):
    events = [
        build_event(
            {
                "action": "doc.view" if i % 2 else "doc.edit",
                "actor_id": f"u{i % 3}",
                "occurred_at": (START + timedelta(minutes=i)).isoformat(),
            }
        )  # fmt: skip
        for i in range(25)
    ]
    store = PostgresStore(clean_db)
    store.insert_events(events)
    store.close()
    return events


def test_needs_the_api_token_or_a_session(client, admin, stored):
    assert client.get("/api/v1/events").status_code == 401
    wrong = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    assert client.get("/api/v1/events", headers=wrong).status_code == 401
    assert client.get("/api/v1/events", headers=AUTH).status_code == 200
    assert admin.get("/api/v1/events").status_code == 200


def test_filters_and_keyset_pages_newest_first(client, stored):
    seen, cursor = [], None
    while True:
        query = {"action": "doc.view", "limit": 4, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/events", query_string=query, headers=AUTH).get_json()
        seen += body["events"]
        if not (cursor := body["next"]):
            break
    expected = [str(e.id) for e in reversed(stored) if e.action == "doc.view"]
    assert [e["id"] for e in seen] == expected and len(expected) == 12
    assert set(seen[0]) >= {"occurred_at", "metadata", "ip"} and "pii" not in seen[0]
    since = (START + timedelta(minutes=20)).isoformat()
    recent = client.get("/api/v1/events", query_string={"since": since}, headers=AUTH)
    assert len(recent.get_json()["events"]) == 5 and recent.get_json()["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"category": "urgent"}, "category"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(client, query, field):
    response = client.get("/api/v1/events", query_string=query, headers=AUTH)
    assert response.status_code == 400
    assert field in response.get_json()["fields"]


def test_limit_up_to_1000(client, stored):
    response = client.get("/api/v1/events", query_string={"limit": 1000}, headers=AUTH)
    assert len(response.get_json()["events"]) == 25
