"""Redaction (auditq/redact.py, applied by the event model): secrets never queued or stored."""

import json

import pytest

from auditq.client import AuditClient
from auditq.config import ConfigError, load_settings
from auditq.decoding import decode_entry
from auditq.events import AuditEvent, build_event
from auditq.redact import DEFAULT_KEY_SET, REDACTED, redact_raw

NESTED = {
    "Password": "hunter2",
    "reason": "spam",
    "request": {"headers": {"AUTHORIZATION": "Bearer abc"}, "items": [{"cvv": 123}, 4]},
    "api_key": {"whole": "object"},
}
EXPECTED = {
    "Password": REDACTED,
    "reason": "spam",
    "request": {"headers": {"AUTHORIZATION": REDACTED}, "items": [{"cvv": REDACTED}, 4]},
    "api_key": REDACTED,
}


def test_default_keys_are_redacted_at_any_depth_whatever_their_case():
    assert build_event({"action": "x", "metadata": NESTED}).metadata == EXPECTED
    raw = json.dumps({"action": "x", "metadata": NESTED}).encode()
    assert decode_entry("1-1", {b"event": raw}, 65_536).metadata == EXPECTED


def test_an_event_built_beforehand_is_redacted_with_the_configured_keys():
    event = AuditEvent(action="x", metadata={"pin": "1234", "password": "p"})
    assert event.metadata == {"pin": "1234", "password": REDACTED}  # the defaults, at once
    again = build_event(event, frozenset({"pin"}))
    assert again.metadata == {"pin": REDACTED, "password": REDACTED}
    assert again.id == event.id


def test_keys_that_only_contain_a_redact_key_are_kept():
    metadata = {"token_count": 3, "secretary": "Ann", "passwords_changed": True}
    assert build_event({"action": "x", "metadata": metadata}).metadata == metadata


def test_configured_keys_replace_the_defaults_and_empty_redacts_nothing(redis_url, redis_client):
    pin_only = AuditClient(load_settings(redis_url=redis_url, redact_keys=" PIN , "))
    assert pin_only.settings.redact_key_set == frozenset({"pin"})
    pin_only.log("a", metadata={"pin": "1234", "password": "kept"})
    nothing = AuditClient(load_settings(redis_url=redis_url, redact_keys=""))
    nothing.log("b", metadata={"password": "kept too"})
    queued = [json.loads(f[b"event"])["metadata"] for _, f in redis_client.xrange("audit:events")]
    assert queued == [{"pin": REDACTED, "password": "kept"}, {"password": "kept too"}]


def test_the_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("AUDITQ_REDACT_KEYS", "Session_ID,otp")
    assert load_settings().redact_key_set == frozenset({"session_id", "otp"})
    monkeypatch.setenv("AUDITQ_REDACT_KEYS", "a,b")
    monkeypatch.setenv("AUDITQ_MAX_QUEUE", "0")
    with pytest.raises(ConfigError):  # the rest of the settings still validates
        load_settings()


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        (b'{"action": "x", "ip": "not an ip", "metadata": {"Password": "s3cret!"}}', b"s3cret!"),
        (b'{"action": "x", "metadata": {"token": "t0ken", "n": 1', b"t0ken"),  # not JSON
        (b'{"action": "x", "metadata": {"cvv": 987, "ok": 1', b"987"),
        (b'{"metadata": {"secret": "with \\"quote\\" s3"}} trailing', b"s3"),
        # Deeper than the event model accepts, so it is dead-lettered: still redacted.
        (b'{"a": ' * 150 + b'{"password": "deep-s3cret"}' + b"}" * 150, b"deep-s3cret"),
    ],
)
def test_an_entry_that_cannot_be_decoded_is_redacted_for_the_dead_letters(raw, secret):
    cleaned = redact_raw(raw, DEFAULT_KEY_SET, 65_536)
    assert secret not in cleaned
    assert REDACTED.encode() in cleaned


def test_an_entry_without_secrets_is_dead_lettered_as_sent():
    raw = b'{"action": "x", "ip": "bad", "metadata": {"tokens": 2}}'
    assert redact_raw(raw, DEFAULT_KEY_SET, 65_536) is raw
