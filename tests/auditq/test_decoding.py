"""The worker's fast path (msgspec, auditq/decoding.py) against the model it stands in for.

For every input, the row the fast path returns must be the model's event's row, and
what it is unsure of goes to the model, which accepts it or names the bad field. Each case
runs twice: as the code runs (fast path first), and with the fast path switched off (the
model alone); the outcomes must be equal. The valid plain cases must take the fast path, so
the comparison is not vacuous.
"""

import json
import random
import uuid

import pytest

from auditq import decoding
from auditq.decoding import decode_rows
from auditq.events import COLUMN, MAX_METADATA_DEPTH
from auditq.redact import REDACTED, key_set
from tests.auditq.helpers import nested

ENTRY = "1700000000123-0"
MAX = 65_536
BASE = {"action": "user.role_change", "actor_id": "u_1", "ip": "198.51.100.23"}
METADATA = COLUMN["metadata"]


# Raw JSON entries: what a producer in any language may write to the stream.
RAW = [
    json.dumps(BASE),
    json.dumps({**BASE, "id": str(uuid.uuid4()), "occurred_at": "2026-01-02T03:04:05.123456Z"}),
    json.dumps({**BASE, "occurred_at": "2026-01-02T03:04:05+02:00"}),
    json.dumps({**BASE, "occurred_at": "2026-01-02 03:04:05z"}),
    json.dumps({**BASE, "occurred_at": "2026-01-02T03:04:05.1234567Z"}),  # truncated, not rounded
    json.dumps({**BASE, "occurred_at": "2026-01-02T03:04:05.9999999Z"}),
    json.dumps({**BASE, "occurred_at": "2026-01-02T03:04Z"}),
    json.dumps({**BASE, "occurred_at": "2026-01-02T03:04:05"}),  # naive
    json.dumps({**BASE, "occurred_at": "0001-01-01T00:00:00+14:00"}),  # year 0 in UTC
    json.dumps({**BASE, "occurred_at": "9999-12-31T23:59:59-01:00"}),  # year 10000 in UTC
    json.dumps({**BASE, "occurred_at": 1700000000}),
    json.dumps({**BASE, "id": "0123456789abcdef0123456789abcdef"}),
    json.dumps({**BASE, "id": "{01234567-89ab-cdef-0123-456789abcdef}"}),
    json.dumps({**BASE, "id": "not-a-uuid"}),
    json.dumps({**BASE, "metadata": {"email": "é@example.com", "name": "Zoë 😀"}}),
    json.dumps({**BASE, "metadata": {"name": "Zoë"}}, ensure_ascii=True),  # \u escapes
    json.dumps({**BASE, "metadata": {"Password": "hunter2", "x": 1}}),
    json.dumps({**BASE, "metadata": {"a": [{"TOKEN": "t"}], "b": {"c": {"api_key": "k"}}}}),
    json.dumps({**BASE, "metadata": {"p\u0061ssword": "s"}}, ensure_ascii=True),
    '{"action":"a","metadata":{"\\u0070assword":"hidden by an escape"}}',
    '{"action":"a","metadata":{"pass\\/word":"x","to\\u004ben":"y"}}',
    json.dumps({**BASE, "metadata": {"TO\u212aEN": "kelvin sign lowers to k"}}),
    json.dumps({**BASE, "metadata": nested(MAX_METADATA_DEPTH)}),
    json.dumps({**BASE, "metadata": nested(MAX_METADATA_DEPTH + 1)}),
    json.dumps({**BASE, "metadata": {"list": [[[[1]]]], "brace": "{[{["}}),
    '{"action":"a","metadata":{"big":' + "9" * 4300 + "}}",
    '{"action":"a","metadata":{"big":1' + "0" * 4300 + "}}",
    '{"action":"a","metadata":{"big":-1' + "0" * 4299 + "}}",
    json.dumps({**BASE, "metadata": {"f": 1.5e308, "g": -0.0, "h": 0.1234567891}}),
    '{"action":"a","metadata":{"f":1e999}}',
    '{"action":"a","metadata":{"f":NaN}}',
    '{"action":"a","metadata":{"f":-Infinity}}',
    '{"action":"a","metadata":{"s":"\\ud800"}}',
    '{"action":"a","metadata":{"s":"\\ud83d\\ude00"}}',
    '{"action":"a\\u0000b"}',
    '{"action":"a","target_id":"x\\u0000"}',
    '{"action":"a","metadata":{"k\\u0000":1}}',
    '{"action":"a","metadata":{"k":["x\\u0000"]}}',
    '{"action":"a","user_agent":"tab\\tand\\\\u0000 literally"}',
    '{"action":"a","action":"b"}',
    '{"action" : "a" , "occurred_at" : "2026-01-02T03:04:05.123Z" }',
    json.dumps({**BASE, "ip": "fe80::1%eth0"}),
    json.dumps({**BASE, "ip": "::ffff:10.0.0.1"}),
    json.dumps({**BASE, "ip": "10.0.0.256"}),
    json.dumps({**BASE, "ip": "1.2.3"}),
    json.dumps({**BASE, "category": "critical", "outcome": "denied"}),
    json.dumps({**BASE, "category": None}),
    json.dumps({**BASE, "outcome": "maybe"}),
    json.dumps({**BASE, "metadata": None}),
    json.dumps({**BASE, "metadata": []}),
    json.dumps({**BASE, "metadata": {}}),
    json.dumps({**BASE, "pii": {"c": "x"}}),
    json.dumps({**BASE, "colour": "red"}),
    json.dumps({**BASE, "action": ""}),
    json.dumps({**BASE, "action": "é" * 256}),
    json.dumps({**BASE, "action": "é" * 257}),
    json.dumps({**BASE, "tenant_id": 5}),
    json.dumps({**BASE, "user_agent": "u" * 1024}),
    json.dumps({**BASE, "user_agent": "u" * 1025}),
    "[]",
    "null",
    "{",
    '{"action":"a"} trailing',
    b'{"action":"\xff"}',
    b'{"action":"a\x00"}',
]


def outcome(run):
    """What a batch's decode gives: each entry's row, or its error's class and text."""
    return [(type(row).__name__, str(row)) if isinstance(row, Exception) else row for row in run()]


def model_only(monkeypatch):
    monkeypatch.setattr(decoding, "_fast_row", lambda *args: None)


def decode_all(raws):
    entries = [(f"1700000000{i:03d}-0", {b"event": raw}) for i, raw in enumerate(raws)]
    return decode_rows(entries, MAX)


def as_bytes(raw):
    return raw if isinstance(raw, bytes) else raw.encode()


@pytest.mark.parametrize("raw", RAW)
def test_one_entry_decodes_as_the_model_decodes_it(raw, monkeypatch):
    fast = outcome(lambda: decode_all([as_bytes(raw)]))
    model_only(monkeypatch)
    assert fast == outcome(lambda: decode_all([as_bytes(raw)]))


def test_a_batch_decodes_as_the_model_decodes_it(monkeypatch):
    # One batch holding every case: what the batch's bytes settle for all entries (no
    # escape anywhere, no long fraction anywhere) is unsettled by the hostile ones.
    raws = [as_bytes(raw) for raw in RAW]
    fast = outcome(lambda: decode_all(raws))
    model_only(monkeypatch)
    assert fast == outcome(lambda: decode_all(raws))


def test_random_events_decode_as_the_model_decodes_them(monkeypatch):
    raws = [json.dumps(event).encode() for event in random_events(random.Random(12), 400)]
    fast = outcome(lambda: decode_all(raws))
    model_only(monkeypatch)
    assert fast == outcome(lambda: decode_all(raws))


def test_plain_valid_entries_take_the_fast_path(monkeypatch):
    taken = []
    fast = decoding._fast_row

    def counted(*args):
        row = fast(*args)
        taken.append(row is not None)
        return row

    monkeypatch.setattr(decoding, "_fast_row", counted)
    raws = [as_bytes(raw) for raw in RAW[:4]] + [json.dumps({"action": "a"}).encode()]
    decoded = decode_all(raws)
    assert all(not isinstance(row, Exception) for row in decoded)
    assert taken == [True] * len(raws)


def test_a_key_known_plain_under_some_redact_keys_is_redacted_under_others():
    # The fast path remembers metadata keys that are no redact key, per set of redact keys.
    raw = json.dumps({**BASE, "metadata": {"note": "n", "x": 1}}).encode()
    entry = [(ENTRY, {b"event": raw})]
    (plain,) = decode_rows(entry, MAX)
    assert plain[METADATA] == {"note": "n", "x": 1}
    (redacted,) = decode_rows(entry, MAX, key_set(["NOTE"]))
    assert redacted[METADATA] == {"note": REDACTED, "x": 1}
    (again,) = decode_rows(entry, MAX)
    assert again[METADATA] == {"note": "n", "x": 1}


def test_the_keys_remembered_as_plain_are_bounded(monkeypatch):
    monkeypatch.setattr(decoding, "PLAIN_KEYS_KEPT", 50)
    keys = key_set(["secret_sauce"])
    raws = [json.dumps({**BASE, "metadata": {f"k{i}": i}}).encode() for i in range(200)]
    raws.append(json.dumps({**BASE, "metadata": {"k1": 1, "Secret_Sauce": "s"}}).encode())
    long_key = "x" * (decoding.PLAIN_KEY_CHARS + 1)
    raws.insert(0, json.dumps({**BASE, "metadata": {long_key: 1}}).encode())
    entries = [(f"1700000000{i:03d}-0", {b"event": raw}) for i, raw in enumerate(raws)]
    decoded = decode_rows(entries, MAX, keys)
    assert decoded[0][METADATA] == {long_key: 1}
    assert [row[METADATA] for row in decoded[1:201]] == [{f"k{i}": i} for i in range(200)]
    assert decoded[201][METADATA] == {"k1": 1, "Secret_Sauce": REDACTED}
    known = decoding._PLAIN_KEYS[keys]
    assert len(known) <= 50
    assert long_key not in known  # a long key is never kept: the bound is on bytes too


def random_events(rng: random.Random, count: int) -> list[dict]:
    """Events built from a pool of good and bad values per field, mixed at random."""
    pools = {
        "id": [str(uuid.uuid4()), "bad", None],
        "occurred_at": [
            "2026-03-04T05:06:07Z", "2026-03-04T05:06:07.1234567+03:00", "2026-03-04",
            "2026-03-04T05:06:07-11:30", None,
        ],
        "action": ["a", "", "x" * 257, "ünïcode", "a\x00"],
        "category": ["normal", "critical", "other"],
        "actor_id": ["u_1", None, "x" * 256, "x" * 257],
        "ip": ["10.0.0.1", "2001:db8::1", "300.1.1.1", None],
        "outcome": ["success", "failure", "denied", "nope"],
        "metadata": [
            {}, None, {"k": "v"}, {"password": "p"}, {"a": {"Token": 1}}, {"f": 1.25},
            {"l": [1, "two", None, True]}, nested(MAX_METADATA_DEPTH + 1), {"n": "\x00"},
        ],
    }  # fmt: skip
    out = []
    for _ in range(count):
        event = {}
        for field, pool in pools.items():
            if rng.random() < 0.6:
                value = rng.choice(pool)
                if value is not None or rng.random() < 0.5:
                    event[field] = value
        out.append(event)
    return out
