import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from auditq.decoding import decode_entry
from auditq.events import (
    MAX_METADATA_DEPTH,
    AuditEvent,
    EventError,
    assemble,
    build_event,
    encode,
)


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


# --- what Postgres refuses is refused at the edge (issue 10, item 4) ----------------------

DEEP = {"a": 1}
for _ in range(MAX_METADATA_DEPTH):
    DEEP = {"a": DEEP}  # one level more than allowed

# (event, field): refused by build_event (client, ingest) and by decode_entry (worker) alike.
HOSTILE = [
    ({"action": "a\u0000b"}, "action"),
    ({"action": "a", "actor_id": "u\u00001"}, "actor_id"),
    ({"action": "a", "user_agent": "\u0000"}, "user_agent"),
    ({"action": "a", "metadata": {"k": "v\u0000"}}, "metadata"),
    ({"action": "a", "metadata": {"k\u0000": "v"}}, "metadata"),
    ({"action": "a", "metadata": {"k": [{"deeper": ["\u0000"]}]}}, "metadata"),
    ({"action": "a", "ip": "fe80::1%eth0"}, "ip"),
    ({"action": "a", "ip": "10.0.0.1\u0000"}, "ip"),
    ({"action": "a", "metadata": DEEP}, "metadata"),
    ({"action": "a", "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ({"action": "a", "occurred_at": "9999-12-31T23:59:59-14:00"}, "occurred_at"),
]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.mark.parametrize(("data", "field"), HOSTILE)
def test_what_postgres_refuses_is_refused_by_build_event_naming_the_field(data, field):
    with pytest.raises(EventError) as caught:
        build_event(data)
    assert caught.value.field == field


@pytest.mark.parametrize(("data", "field"), HOSTILE)
def test_the_worker_refuses_the_same_raw_entries(data, field):
    raw = json.dumps(data).encode()
    with pytest.raises(EventError) as caught:
        decode_entry("1-0", {b"event": raw}, 1_000_000)
    assert caught.value.field == field


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_are_refused_not_stored_as_null(number):
    raw = f'{{"action": "a", "metadata": {{"x": [1, {number}]}}}}'
    with pytest.raises(EventError) as caught:
        decode_entry("1-0", {b"event": raw.encode()}, 1_000_000)
    assert caught.value.field == "metadata"
    with pytest.raises(EventError):
        build_event(json.loads(raw))  # what HTTP ingest parses (json.loads takes NaN)
    with pytest.raises(EventError):
        build_event({"action": "a", "metadata": {"x": float(number)}})


def test_integers_longer_than_the_worker_reads_are_refused():
    with pytest.raises(EventError) as caught:
        build_event({"action": "a", "metadata": {"n": 10**4300}})
    assert caught.value.field == "metadata"
    assert build_event({"action": "a", "metadata": {"n": 10**4300 - 1}})


def test_an_entry_id_whose_time_is_out_of_range_is_an_event_error():
    fields = {b"event": b'{"action": "a"}'}
    with pytest.raises(EventError) as caught:
        decode_entry("18446744073709551615-0", fields, 65_536)
    assert caught.value.field == "occurred_at"


def test_edge_values_inside_the_limits_are_accepted():
    deepest: dict = {"a": 1}
    for _ in range(MAX_METADATA_DEPTH - 2):  # inside metadata: MAX_METADATA_DEPTH levels
        deepest = {"a": deepest}
    event = build_event(
        {
            "action": "a",
            "occurred_at": "0001-01-01T00:00:00Z",
            "ip": "::ffff:192.0.2.1",
            "metadata": {"deep": deepest, "text": "\\u0000 as text", "big": 10**4300 - 1},
        }
    )
    assert decode_entry("1-0", {b"event": event.to_json().encode()}, 1_000_000) == event


def test_encode_writes_what_orjson_refuses_as_the_model_does():
    event = build_event({"action": "a", "metadata": {"tags": {"x"}, "big": 2**70, "raw": b"b"}})
    written = json.loads(encode(event, 65_536))["metadata"]
    assert written == {"tags": ["x"], "big": 2**70, "raw": "b"}


def test_an_assembled_event_is_the_validated_one_in_every_respect():
    # The fast paths build events without the model (auditq/decoding.py, auditq/bulk.py).
    validated = build_event(
        {"action": "user.ban", "actor_id": "u1", "ip": "192.0.2.1", "metadata": {"a": [1]}}
    )
    assembled = assemble(dict(validated.__dict__))
    assert assembled == validated
    assert assembled.__pydantic_extra__ is None and assembled.__pydantic_private__ is None
    assert assembled.model_fields_set == set(AuditEvent.model_fields)
    assert assembled.model_dump() == validated.model_dump()
    assert assembled.to_json() == validated.to_json()
    assert repr(assembled) == repr(validated)
    changed = assembled.model_copy(update={"action": "user.unban"})
    assert (changed.action, assembled.action) == ("user.unban", "user.ban")
    with pytest.raises(ValidationError):  # frozen, as a validated event is
        assembled.action = "user.unban"
