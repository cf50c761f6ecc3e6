import json
import uuid
from datetime import UTC, datetime

import pytest

from auditq.events import EventError, build_event, decode_entry, encode


def test_a_valid_event_gets_a_uuid7_and_a_time():
    event = build_event({"action": "user.ban", "actor_id": "u_42", "ip": "10.0.0.1"})
    assert event.id.version == 7
    assert event.occurred_at.tzinfo is not None
    assert str(event.ip) == "10.0.0.1"


def test_ids_from_one_producer_sort_by_time():
    ids = [build_event({"action": "a"}).id for _ in range(100)]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "action"),
        ({"action": ""}, "action"),
        ({"action": "a", "ip": "999.1.1.1"}, "ip"),
        ({"action": "a", "metadata": ["not", "an", "object"]}, "metadata"),
        ({"action": "a", "metadata": "text"}, "metadata"),
        ({"action": "a", "category": "urgent"}, "category"),
        ({"action": "a", "outcome": "maybe"}, "outcome"),
        ({"action": "a", "occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"action": "a", "colour": "red"}, "colour"),
    ],
)
def test_invalid_events_name_the_field(data, field):
    with pytest.raises(EventError) as caught:
        build_event(data)
    assert caught.value.field == field


def test_oversized_events_are_refused():
    event = build_event({"action": "a", "metadata": {"blob": "x" * 70_000}})
    with pytest.raises(EventError) as caught:
        encode(event, max_bytes=65_536)
    assert caught.value.field == "event"
    assert "65536" in str(caught.value)


def test_decode_fills_a_stable_id_and_the_entry_time():
    fields = {b"event": json.dumps({"action": "user.login"}).encode()}
    first = decode_entry("1700000000123-0", fields, 65_536)
    again = decode_entry("1700000000123-0", fields, 65_536)
    other = decode_entry("1700000000123-1", fields, 65_536)
    assert first.id == again.id != other.id
    assert first.occurred_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_decode_keeps_a_producer_id():
    given = uuid.uuid4()
    fields = {b"event": json.dumps({"action": "a", "id": str(given)}).encode()}
    assert decode_entry("1-0", fields, 65_536).id == given


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({b"event": b"{not json"}, "not valid JSON"),
        ({b"event": b"[1, 2]"}, "JSON object"),
        ({b"other": b"x"}, "no 'event' field"),
        ({b"event": json.dumps({"action": "a", "pad": "x" * 100}).encode()}, "over the 64"),
    ],
)
def test_decode_rejects_what_producers_got_wrong(fields, fragment):
    with pytest.raises(EventError) as caught:
        decode_entry("1-0", fields, 64)
    assert fragment in str(caught.value)
