"""native/auditq_pii.c, the writer's C path: what it seals decrypts with the cryptography
package to exactly the values taken out; what it cannot take it leaves to the Python path;
bad input raises, never crashes, and leaves the row as it was."""

from __future__ import annotations

import os
import random
import uuid

import auditq_pii
import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auditq.events import COLUMN, ROW_COLUMNS
from auditq.pii import FORMAT, crypto, unpack
from auditq.pii import writer as pii_writer
from auditq.pii.writer import native_spec

FIELDS = ["ip", "user_agent", "metadata.email", "metadata.customer.phone"]
SPEC = native_spec(FIELDS)
RAW = {subject: os.urandom(32) for subject in ("alice", "bob", "")}
KEYS = {subject: (str(uuid.uuid4()), raw, "the writer's AESGCM") for subject, raw in RAW.items()}
# Quotes, backslashes, every control character, DEL, non-ASCII, astral, empty, large.
AWKWARD = ['"', "\\", "".join(map(chr, range(32))), "\x7f", "é中", "😀", "", "x" * 100_000]


def row(actor="alice", ip=None, agent=None, metadata=None):
    values = dict.fromkeys(ROW_COLUMNS)
    values.update(id=uuid.uuid4(), actor_id=actor, ip=ip, user_agent=agent,
                  metadata={} if metadata is None else metadata)  # fmt: skip
    return list(values.values())


def opened(sealed_row) -> tuple[str, list[str], dict]:
    """(key id, field names, the fields) of a sealed row, decrypted with the cryptography
    package under its subject's key."""
    pii = orjson.loads(sealed_row[COLUMN["pii"]])
    assert list(pii) == [FORMAT]
    parts = unpack(pii)
    data_key = AESGCM(RAW[sealed_row[COLUMN["actor_id"]] or ""])
    plain = crypto.decrypt(data_key, sealed_row[COLUMN["id"]], parts.ciphertext)
    return parts.key_id, parts.names, orjson.loads(plain)


def seal(rows, keys=KEYS):
    fast, slow, _ = auditq_pii.split(rows, SPEC)
    return fast, slow, auditq_pii.seal(fast, keys, SPEC)


def test_the_writer_has_it():
    # Built by `pip install -r requirements.txt`; where it is missing the writer falls back
    # to Python, so this is what says CI ran the C path.
    assert pii_writer.native is auditq_pii


def test_sealed_rows_decrypt_to_exactly_the_values_taken_out():
    metadata = {"email": "a@example.test", "plan": "pro", "customer_id": 7}
    rows = [
        row(ip="192.0.2.1", agent="Agent/1", metadata=metadata),
        row("bob", ip="2001:db8::1"),
        row(None, agent="nobody's", metadata={"email": "x@example.test"}),
    ]
    fast, slow, left = seal(rows)
    assert fast == rows and slow == [] and left == []
    key_id, names, values = opened(rows[0])
    assert key_id == KEYS["alice"][0] and names == ["ip", "user_agent", "metadata.email"]
    assert values == {
        "ip": "192.0.2.1",
        "user_agent": "Agent/1",
        "metadata.email": metadata["email"],
    }
    assert rows[0][COLUMN["ip"]] is None and rows[0][COLUMN["user_agent"]] is None
    assert rows[0][COLUMN["metadata"]] == {"plan": "pro", "customer_id": 7}
    assert metadata["email"] == "a@example.test"  # a copy changed: the event's own is intact
    assert opened(rows[1])[1:] == (["ip"], {"ip": "2001:db8::1"})
    key_id, names, values = opened(rows[2])  # no actor: the subject ""
    assert key_id == KEYS[""][0] and values == {
        "user_agent": "nobody's",
        "metadata.email": "x@example.test",
    }
    assert rows[2][COLUMN["metadata"]] == {}


@pytest.mark.parametrize("value", AWKWARD)
def test_any_text_comes_back_as_it_was(value):
    sealed = row(ip=value, agent=value, metadata={"email": value})
    seal([sealed])
    assert opened(sealed)[2] == {"ip": value, "user_agent": value, "metadata.email": value}


def test_random_text_comes_back_as_it_was():
    draw = random.Random(15)
    alphabet = [*map(chr, range(128)), "é", "ß", "中", "\u2028", "\ufeff", "😀", "\U0010ffff"]
    values = ["".join(draw.choices(alphabet, k=draw.randrange(40))) for _ in range(2000)]
    rows = [row(draw.choice(list(RAW)) or None, ip=value) for value in values]
    seal(rows)
    assert [opened(sealed)[2]["ip"] for sealed in rows] == values


def test_each_row_has_its_own_nonce_and_its_ciphertext_is_bound_to_its_id():
    rows = [row(ip="192.0.2.1") for _ in range(5000)]
    seal(rows)
    sealed = [unpack(orjson.loads(r[COLUMN["pii"]])).ciphertext for r in rows]
    assert len({text[:16] for text in sealed}) == len(rows)  # the nonce leads the base64
    with pytest.raises(crypto.Undecryptable):
        crypto.decrypt(AESGCM(RAW["alice"]), rows[1][COLUMN["id"]], sealed[0])


def test_split_leaves_to_python_what_c_does_not_take():
    done = row(ip="192.0.2.1")
    seal([done])
    kinds = {
        "nothing personal": row(metadata={"plan": "pro"}),
        "sealed already": done,
        "str columns": row(ip="192.0.2.2"),
        "str metadata": row(metadata={"email": "e"}),
        "a number": row(metadata={"email": 7}),
        "null": row(metadata={"email": None}),
        "a nested path's head": row(ip="192.0.2.3", metadata={"customer": {"id": 1}}),
        "metadata not a dict": row(metadata=["email"]),
    }
    kinds["str columns"][COLUMN["actor_id"]] = None
    fast, slow, subjects = auditq_pii.split(list(kinds.values()), SPEC)
    by_id = {id(r): name for name, r in kinds.items()}
    assert [by_id[id(r)] for r in fast] == ["str columns", "str metadata"]
    assert subjects == {"", "alice"}  # the fast rows' (a row without an actor: "")
    assert [by_id[id(r)] for r in slow] == [
        "a number", "null", "a nested path's head", "metadata not a dict"
    ]  # fmt: skip


def test_text_that_is_not_utf8_is_left_to_python_unchanged():
    lone = row(ip="192.0.2.1", metadata={"email": "\ud800"})
    before = list(lone)
    fast, _, left = seal([lone])
    assert fast == [lone] and left == [lone] and lone == before


def test_field_names_that_are_not_ascii_are_left_to_python():
    spec = native_spec(["ip", "metadata.é"])
    named = row(ip="192.0.2.1", metadata={"é": "x"})
    fast, _, _ = auditq_pii.split([named], spec)
    assert fast == [named] and auditq_pii.seal(fast, KEYS, spec) == [named]
    assert named[COLUMN["pii"]] is None


def test_a_missing_key_raises_after_the_rows_before_it_and_leaves_the_rest_as_they_were():
    rows = [row(ip="192.0.2.1"), row("carol", ip="192.0.2.2"), row(ip="192.0.2.3")]
    after = [list(r) for r in rows[1:]]
    with pytest.raises(KeyError, match="carol"):
        seal(rows)
    assert opened(rows[0])[2] == {"ip": "192.0.2.1"}  # whole: sealing again skips it
    assert rows[1:] == after


@pytest.mark.parametrize(
    "keys, error",
    [
        ({"alice": (str(uuid.uuid4()), os.urandom(16))}, TypeError),  # AES-128's size
        ({"alice": ("id",)}, TypeError),
        ({"alice": "not a tuple"}, TypeError),
    ],
)
def test_a_malformed_key_raises_and_changes_nothing(keys, error):
    rows = [row(ip="192.0.2.1")]
    before = list(rows[0])
    with pytest.raises(error):
        seal(rows, keys)
    assert rows[0] == before


def test_rows_it_was_not_given_by_split_are_refused():
    plain = row(metadata={"plan": "pro"})
    with pytest.raises(ValueError, match="split"):
        auditq_pii.seal([plain], KEYS, SPEC)
    with pytest.raises(TypeError):
        auditq_pii.split([("not", "a", "list")], SPEC)
    with pytest.raises(IndexError):
        auditq_pii.split([["short"]], SPEC)
    bad_id = row(ip="192.0.2.1")
    bad_id[COLUMN["id"]] = "not a uuid"
    with pytest.raises(TypeError, match="uuid"):
        seal([bad_id])
    assert bad_id[COLUMN["ip"]] == "192.0.2.1"


def test_a_malformed_spec_is_refused():
    ip_index = COLUMN["ip"]
    for spec in (
        (*SPEC[:4], ((b"ip", "not an index"),), *SPEC[5:]),
        (*SPEC[:4], (("ip", ip_index),), *SPEC[5:]),
        (*SPEC[:5], ((b"metadata.email", 1),), *SPEC[6:]),
        (*SPEC[:6], (1,), *SPEC[7:]),
        SPEC[:-1],
    ):
        with pytest.raises(TypeError):
            auditq_pii.split([row(ip="192.0.2.1")], spec)


def test_garbage_anywhere_in_a_row_raises_or_is_left_never_crashes():
    # A crash here would take the worker down on every retry of the batch holding the row.
    draw = random.Random(7)
    junk = [None, 0, -1, 2**200, 1.5, b"bytes", "text", "\ud800", [], {}, {"email": 1},
            {1: "email"}, ("tuple",), uuid.uuid4(), object()]  # fmt: skip
    keys = {s: KEYS["alice"] for s in ("alice", "", "text", "\ud800")}  # one key: any actor
    taken = {"ip": lambda r: r[COLUMN["ip"]], "user_agent": lambda r: r[COLUMN["user_agent"]],
             "metadata.email": lambda r: r[COLUMN["metadata"]]["email"]}  # fmt: skip
    outcomes = set()
    for _ in range(3000):
        shaken = row(ip="192.0.2.1", agent="a", metadata={"email": "e"})
        for _ in range(draw.randrange(1, 4)):
            shaken[draw.randrange(len(shaken))] = draw.choice(junk)
        rows = [shaken, row(ip="192.0.2.2")]
        before = [list(r) for r in rows]
        try:
            seal(rows, keys)
        except (TypeError, ValueError, KeyError, IndexError):
            assert rows[1] == before[1]  # nothing after the bad row was touched
            outcomes.add("raised")
            continue
        for done, was in zip(rows, before, strict=True):
            if done == was:
                outcomes.add("left")  # nothing to seal, or the Python path's
                continue
            pii = unpack(orjson.loads(done[COLUMN["pii"]]))
            plain = crypto.decrypt(AESGCM(RAW["alice"]), done[COLUMN["id"]], pii.ciphertext)
            assert orjson.loads(plain) == {name: taken[name](was) for name in pii.names}
            outcomes.add("sealed")
    assert outcomes == {"raised", "left", "sealed"}
