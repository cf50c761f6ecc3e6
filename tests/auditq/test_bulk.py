"""``encode_batch``, the fast path of ``log_many``, against the model's way it stands in for.

For every list of events, ``encode_batch`` must give what ``build_event`` then ``encode``
give for each (the events, their payloads, the first EventError), whatever the fast path
took and whatever it left to the model. Ids and times that the producer left to auditq
are new on each call; everything else must be equal, and each payload is exactly
``encode`` of its event. The plain cases must take the fast path, so the comparison is not
vacuous.
"""

import collections
import enum
import itertools
import math
import random
import types
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from auditq import bulk
from auditq.bulk import encode_batch
from auditq.events import MAX_METADATA_DEPTH, AuditEvent, EventError, build_event, encode
from auditq.redact import DEFAULT_KEY_SET, key_set
from tests.auditq.helpers import nested

MAX = 65_536
BASE = {"action": "user.role_change", "actor_id": "u_1", "ip": "198.51.100.23"}
GIVEN_ID = uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8057")
PLUS_TWO = timezone(timedelta(hours=2))


class Text(str):
    pass


class Kind(enum.StrEnum):
    CRITICAL = "critical"


# Python events, as producers pass them to log_many: plain ones first (the fast path's).
PLAIN = [
    BASE,
    {"action": "a"},
    {**BASE, "category": "critical", "outcome": "denied", "tenant_id": "t_1"},
    {**BASE, "id": GIVEN_ID, "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)},
    {**BASE, "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=PLUS_TWO)},
    {**BASE, "metadata": {"email": "é@example.com", "name": "Zoë 😀", "n": -3, "ok": True}},
    {**BASE, "metadata": {"Password": "hunter2", "x": 1}},
    {**BASE, "metadata": {"s": "[redacted]", "token": "t"}},
    {**BASE, "metadata": {}},
    {**BASE, "metadata": None, "target_id": None},
    {**BASE, "ip": "::ffff:10.0.0.1", "user_agent": "u" * 1024, "action": "é" * 256},
]
OTHER = [
    {**BASE, "metadata": {"s": '"[redacted]"', "t": "x]"}},
    {**BASE, "id": str(GIVEN_ID)},
    {**BASE, "id": "not-a-uuid"},
    {**BASE, "id": None},
    {**BASE, "occurred_at": "2026-01-02T03:04:05.1234567Z"},
    {**BASE, "occurred_at": "2026-01-02T03:04:05"},
    {**BASE, "occurred_at": 1700000000},
    {**BASE, "occurred_at": None},
    {**BASE, "occurred_at": datetime(2026, 1, 2, 3, 4, 5)},  # naive
    {**BASE, "occurred_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))},
    {**BASE, "metadata": {"a": [{"TOKEN": "t"}], "b": {"c": {"api_key": "k"}}}},
    {**BASE, "metadata": {"list": [[[[1]]]], "brace": "{[{["}},
    {**BASE, "metadata": nested(MAX_METADATA_DEPTH)},
    {**BASE, "metadata": nested(MAX_METADATA_DEPTH + 1)},
    {**BASE, "metadata": {"f": 1.5e308, "g": -0.0, "h": 0.1234567891}},
    {**BASE, "metadata": {"f": math.nan}},
    {**BASE, "metadata": {"f": [1, -math.inf]}},
    {**BASE, "metadata": {"big": 2**70, "bigger": 10**4300 - 1}},
    {**BASE, "metadata": {"big": 10**4300}},
    {**BASE, "metadata": {"tags": {"x"}, "raw": b"b", "pair": (1, 2)}},
    {**BASE, "metadata": {"sub": collections.OrderedDict(token="t", n=1)}},
    {**BASE, "metadata": {"text": Text("x"), "token": "t"}},
    {**BASE, "metadata": {"when": datetime(2026, 1, 1, tzinfo=UTC), "id": GIVEN_ID}},
    {**BASE, "metadata": {"none": None, "text": "null"}},
    {**BASE, "metadata": {"s": "v\x00"}},
    {**BASE, "metadata": {"k\x00": 1}},
    {**BASE, "metadata": {"s": "\\u0000 as text"}},
    {**BASE, "metadata": {1: "not a text key"}},
    {**BASE, "metadata": types.MappingProxyType({"a": 1})},
    {**BASE, "metadata": ["not", "an", "object"]},
    {**BASE, "metadata": "text"},
    {**BASE, "actor_id": Text("u_2"), "category": Kind.CRITICAL},
    {**BASE, "action": "a\x00b"},
    {**BASE, "target_id": "x\x00"},
    {**BASE, "action": ""},
    {**BASE, "action": "é" * 257},
    {**BASE, "tenant_id": 5},
    {**BASE, "category": "urgent"},
    {**BASE, "category": None},
    {**BASE, "outcome": "maybe"},
    {**BASE, "ip": "fe80::1%eth0"},
    {**BASE, "ip": "10.0.0.256"},
    {**BASE, "ip": "10.0.0.1\x00"},
    {**BASE, "colour": "red"},
    {**BASE, "pii": None},
    {**BASE, "pii": {"c": "x"}},
    {"actor_id": "u_1"},
    {1: "a", "action": "a"},
    ["not", "an", "object"],
    AuditEvent(action="built", metadata={"mfa": True, "token": "t"}),
]
KEYS = [DEFAULT_KEY_SET, key_set(["mfa", "x"]), frozenset()]


def outcome(run):
    """What a call gives: per event its values, payload and id as text, or the error."""
    try:
        built, payloads, ids = run()
    except Exception as error:
        return type(error).__name__, str(error)
    return [
        (comparable(event), payload, event_id)
        for event, payload, event_id in zip(built, payloads, ids, strict=True)
    ]


def comparable(event):
    """An event's values, with the id and time auditq made (new on each call) left out."""
    assert isinstance(event, AuditEvent)
    values = dict(event.__dict__)
    made = {"id", "occurred_at"} - event.model_fields_set
    for name in made:
        values[name] = "made by auditq"
    return values, event.model_fields_set


def the_batch(items, max_bytes=MAX, keys=DEFAULT_KEY_SET):
    encoded = encode_batch(items, max_bytes, keys)
    built = [encoded.event(i) for i in range(len(items))]
    assert encoded.ids == [str(e.id) for e in built]
    assert encoded.categories == [e.category for e in built]
    assert encoded.tenants == [e.tenant_id for e in built]
    assert encoded.payloads == [encode(e, max_bytes) for e in built]
    return built, encoded.payloads, encoded.ids


def the_model(items, max_bytes=MAX, keys=DEFAULT_KEY_SET):
    built = [build_event(item, keys) for item in items]
    return built, [encode(e, max_bytes) for e in built], [str(e.id) for e in built]


def same(items, max_bytes=MAX, keys=DEFAULT_KEY_SET):
    fast = outcome(lambda: the_batch(items, max_bytes, keys))
    model = outcome(lambda: the_model(items, max_bytes, keys))
    # The payloads hold the made ids and times: equal events, each payload encode() of its
    # own (checked in the_batch), so only their places are compared here.
    if isinstance(fast, list) and isinstance(model, list):
        fast = [values for values, _, _ in fast]
        model = [values for values, _, _ in model]
    assert fast == model


@pytest.mark.parametrize("keys", KEYS, ids=["default keys", "other keys", "no keys"])
@pytest.mark.parametrize("item", PLAIN + OTHER)
def test_one_event_encodes_as_the_model_encodes_it(item, keys):
    same([item], keys=keys)


@pytest.mark.parametrize("keys", KEYS, ids=["default keys", "other keys", "no keys"])
def test_a_call_of_every_valid_case_encodes_as_the_model_encodes_it(keys):
    # One call mixing the plain and the others: what the look at all the payloads settles
    # for the plain ones is unsettled by the others, one by one.
    valid = [i for i in PLAIN + OTHER if isinstance(outcome(lambda i=i: the_model([i])), list)]
    assert len(valid) > len(PLAIN)
    same(valid, keys=keys)


def test_random_calls_encode_as_the_model_encodes_them():
    rng = random.Random(7)
    pool = PLAIN + OTHER
    for _ in range(200):
        same([rng.choice(pool) for _ in range(rng.randint(1, 6))])


def test_the_first_error_is_the_models():
    # A validation error comes before any size error, whichever event comes first, and a
    # model's error before a later fast-path one.
    big = {**BASE, "metadata": {"blob": "x" * 300}}
    same([big, {**BASE, "ip": "1.2.3"}], max_bytes=256)
    same([big, BASE], max_bytes=256)
    same([{**BASE, "metadata": {"s": "v\x00"}}, {**BASE, "action": ""}])
    same([{**BASE, "action": ""}, {**BASE, "metadata": {"s": "v\x00"}}])


def test_plain_events_take_the_fast_path_and_are_built_only_when_asked():
    encoded = encode_batch(PLAIN * 3, MAX)
    assert all(isinstance(made, tuple) for made in encoded._made)
    first = encoded.event(0)
    assert encoded.event(0) is first  # built once
    given = PLAIN[5]["metadata"]
    assert encoded.event(5).metadata == given
    assert encoded.event(5).metadata is not given  # its own, as the model's event has
    assert isinstance(encoded._made[0], AuditEvent)


def test_an_oversized_event_is_refused_naming_its_size():
    with pytest.raises(EventError) as caught:
        encode_batch([BASE, {**BASE, "metadata": {"blob": "x" * 500}}], max_bytes=400)
    assert caught.value.field == "event"
    assert "400-byte limit" in str(caught.value)


def test_the_ids_are_uuid7_in_order_and_the_times_utc():
    encoded = encode_batch([BASE] * 50, MAX)
    built = [encoded.event(i) for i in range(50)]
    ids = [e.id for e in built]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert all(e.occurred_at.tzinfo is UTC for e in built)


def test_the_order_of_a_producers_keys_does_not_change_the_payload():
    shuffled = {"metadata": {"a": 1}, "ip": "10.0.0.1", "actor_id": None, "action": "a"}
    reverse = dict(reversed(list(shuffled.items())))
    same([shuffled, reverse, {**reverse, "category": "critical"}])
    first, second = encode_batch([shuffled, reverse], MAX).payloads
    assert first.split('"action"')[1] == second.split('"action"')[1]


def test_many_shapes_of_events_keep_a_bounded_memo():
    fields = ["actor_type", "actor_id", "target_type", "target_id", "tenant_id", "request_id"]
    for shape in itertools.permutations([*fields, "user_agent"]):
        encode_batch([{"action": "a", **dict.fromkeys(shape, "x")}], MAX)
    assert 0 < len(bulk._TEMPLATES) <= bulk._MAX_TEMPLATES
