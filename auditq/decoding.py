"""Stream entries back into events: the worker's decode (every entry, every time).

Producers in other languages write to the stream directly and are never trusted, so the
worker validates each entry again as the clients do (auditq/events.py), and fills in the
id and time an entry may lack from the entry itself, so a redelivery maps to the same row.

The model is slow here: pydantic-core calls its Python validators once per field. msgspec
checks the same types and limits in C (``Wire``); the few checks it has no word for (NUL,
inet, a time Python can hold in UTC, storable metadata, secrets) follow in plain Python,
and most of them are settled for a whole batch by looking at its bytes once. Whatever this
path is not sure of goes to the model, the reference, which accepts it or names the bad
field: so the two give the same row for the same entry (tests/auditq/test_decoding.py
compares them on valid and hostile input alike).

An entry becomes the row the store writes (``events.Row``) straight from msgspec's struct,
whose fields are the row's first columns, in order. Building a model of it, to read it back
into a row for the insert, was a sixth of the worker's instructions an event
(bench/HISTORY.md, issue 12, Session 11)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec.structs import astuple
from pydantic import ValidationError

from auditq.events import (
    COLUMN,
    INT_DIGITS,
    TEXT_FIELDS,
    AuditEvent,
    EventError,
    Row,
    Wire,
    event_row,
    field_error,
    in_utc,
    is_inet,
    row_event,
    unstorable,
)
from auditq.redact import DEFAULT_KEY_SET, has_secret, redact

# Namespace for ids derived from stream entry ids (events that came without an id):
# the same entry always maps to the same UUID, so a redelivery cannot make a second row.
ENTRY_ID_NAMESPACE = uuid.UUID("6f1c3d2e-8a4b-5c6d-9e0f-a1b2c3d4e5f6")


def derived_id(entry_id: str, shard: int = 0) -> uuid.UUID:
    """The id of an event that came without one: the same stream entry, the same UUID.

    Entry ids are unique per stream only, so another shard's (AUDITQ_SHARDS) names its
    shard too; shard 0's stays what it was before shards existed.
    """
    return uuid.uuid5(ENTRY_ID_NAMESPACE, f"{entry_id}@{shard}" if shard else entry_id)


def entry_time(entry_id: str) -> datetime:
    """A stream entry id starts with its Redis server time in milliseconds.

    A producer may XADD with an explicit id of its own, so the time can be far off.
    """
    try:
        return datetime.fromtimestamp(int(entry_id.split("-", 1)[0]) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise EventError("occurred_at", f"entry id {entry_id} is not a time in range") from None


def decode_entry(
    entry_id: str,
    fields: Mapping[Any, bytes | str],
    max_bytes: int,
    redact_keys: frozenset[str] = DEFAULT_KEY_SET,
    shard: int = 0,
) -> AuditEvent:
    """Turn one stream entry into an event, filling the id and time it may lack.

    Raises EventError for anything a producer got wrong (no ``event`` field, bad JSON,
    oversized, invalid fields); the worker dead-letters those with the message.
    """
    (decoded,) = decode_rows([(entry_id, fields)], max_bytes, redact_keys, shard)
    if isinstance(decoded, Exception):
        raise decoded
    return row_event(decoded)


def decode_rows(
    entries: Sequence[tuple[str, Mapping[Any, bytes | str]]],
    max_bytes: int,
    redact_keys: frozenset[str] = DEFAULT_KEY_SET,
    shard: int = 0,
) -> list[Row | Exception]:
    """``decode_entry`` for a batch of (entry id, fields), as the rows the store writes
    (ingest path ``queue``): each entry's row, or the error that keeps it out (EventError
    for a producer's mistake; anything else it raised)."""
    raws = [_payload(fields) for _, fields in entries]
    survey = _Survey.of([raw for raw in raws if raw is not None])
    out: list[Row | Exception] = []
    for (entry_id, _), raw in zip(entries, raws, strict=True):
        try:
            out.append(_decode(entry_id, raw, max_bytes, redact_keys, shard, survey))
        except Exception as error:  # whatever it is, it is this entry's fault
            out.append(error)
    return out


def _payload(fields: Mapping[Any, bytes | str]) -> bytes | None:
    raw = fields.get(b"event")  # as the worker reads entries: bytes keys and values
    if raw is None:
        raw = fields.get("event")
    return raw.encode() if isinstance(raw, str) else raw


def _decode(
    entry_id: str,
    raw: bytes | None,
    max_bytes: int,
    redact_keys: frozenset[str],
    shard: int,
    survey: _Survey,
) -> Row:
    if raw is None:
        raise EventError("event", "stream entry has no 'event' field")
    if len(raw) > max_bytes:
        raise EventError("event", f"is {len(raw)} bytes, over the {max_bytes}-byte limit")
    row = _fast_row(raw, entry_id, shard, redact_keys, survey)
    if row is not None:
        return row
    # The model decides what the fast path was not sure of, and names the bad field.
    return event_row(model_decode(raw, entry_id, shard, redact_keys), "queue")


def model_decode(
    raw: bytes, entry_id: str, shard: int = 0, redact_keys: frozenset[str] = DEFAULT_KEY_SET
) -> AuditEvent:
    """One entry decoded by the model alone: the reference the fast path answers to."""
    try:
        event = AuditEvent.model_validate_json(raw, context={"redact_keys": redact_keys})
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        if first["type"] == "json_invalid":
            raise EventError("event", f"is not valid JSON ({first['msg']})") from None
        if first["type"] == "model_type":
            raise EventError("event", "must be a JSON object") from None
        raise field_error(error) from None
    # What the producer left out is taken from the entry, so a redelivery maps to the same row.
    missing: dict[str, Any] = {}
    if "id" not in event.model_fields_set:
        missing["id"] = derived_id(entry_id, shard)
    if "occurred_at" not in event.model_fields_set:
        missing["occurred_at"] = entry_time(entry_id)
    return event.model_copy(update=missing) if missing else event


# --- the fast path ---------------------------------------------------------------------------

_WIRE = msgspec.json.Decoder(Wire)
_ID, _OCCURRED_AT, _IP, _METADATA = (COLUMN[c] for c in ("id", "occurred_at", "ip", "metadata"))
_TEXT_COLUMNS = [COLUMN[name] for name in TEXT_FIELDS]
_JSON_CONTAINERS = frozenset((dict, list))  # the exact types msgspec makes of objects, arrays
# Metadata keys known to be no redact key, per set of redact keys. Most batches repeat a
# few keys: one C-level subset test of them costs a fifth of lowering each key to compare.
# Bounded in number and length (at most ~1 MB), since producers choose their keys freely.
_PLAIN_KEYS: dict[frozenset[str], set[str]] = {}
PLAIN_KEYS_KEPT = 4096
PLAIN_KEY_CHARS = 64
# msgspec rounds a time's fraction past microseconds where the model truncates it.
_LONG_FRACTION = re.compile(rb"\.[0-9]{7}")


@dataclass(frozen=True)
class _Survey:
    """What one look at a whole batch's bytes settles for every entry in it (a few C-speed
    scans of the batch cost less than a Python step per entry)."""

    unescaped: bool  # no \u escape: JSON spells a NUL only so (msgspec refuses a raw one)
    long_fractions: bool  # some number has 7+ fraction digits: maybe a time to truncate

    @classmethod
    def of(cls, raws: list[bytes]) -> _Survey:
        joined = b"\n".join(raws)
        # A memchr finds no backslash in most batches, a tenth of the cost of the search.
        unescaped = b"\\" not in joined or b"\\u" not in joined
        return cls(unescaped, _LONG_FRACTION.search(joined) is not None)


def _fast_row(
    raw: bytes, entry_id: str, shard: int, redact_keys: frozenset[str], survey: _Survey
) -> Row | None:
    if survey.long_fractions and _LONG_FRACTION.search(raw):
        return None
    try:
        # Wire's fields are the row's first columns, in order; pii and the path follow.
        row = [*astuple(_WIRE.decode(raw)), None, "queue"]
    except (msgspec.MsgspecError, ValueError):  # ValueError: invalid UTF-8
        return None
    if not _checked(row, redact_keys, raw if survey.unescaped else b""):
        return None
    # What the producer left out is taken from the entry, so a redelivery maps to the same row.
    if row[_ID] is msgspec.UNSET:
        row[_ID] = derived_id(entry_id, shard)
    if row[_OCCURRED_AT] is msgspec.UNSET:
        row[_OCCURRED_AT] = entry_time(entry_id)
    return row


def _checked(row: Row, redact_keys: frozenset[str], plain: bytes) -> bool:
    """Finish the model's checks on msgspec's values, in place; False if unsure or invalid.

    ``plain``: the entry's JSON if it has no \\u escape (else empty), so that no string in
    it holds a NUL, and its brackets and length bound what its metadata can hold."""
    if not plain:
        for index in _TEXT_COLUMNS:
            text = row[index]
            if text is not None and "\x00" in text:
                return False
    when = row[_OCCURRED_AT]
    if when is not msgspec.UNSET and when.tzinfo is not UTC:
        if (when := in_utc(when)) is None:
            return False
        row[_OCCURRED_AT] = when
    if row[_IP] is not None and not is_inet(row[_IP]):
        return False
    metadata = row[_METADATA]
    if metadata is None:
        row[_METADATA] = {}
    elif metadata:
        # Metadata of plain values (no object or array in it), which msgspec read as JSON
        # (finite floats), in an entry short enough to hold no huge integer.
        if (
            plain
            and len(plain) <= INT_DIGITS
            and _JSON_CONTAINERS.isdisjoint(map(type, metadata.values()))
        ):
            secret = _has_secret_key(metadata, redact_keys)
        elif unstorable(metadata, 1) is not None:
            return False
        else:
            secret = bool(redact_keys) and has_secret(metadata, redact_keys)
        if secret:
            row[_METADATA] = redact(metadata, redact_keys)
    return True


def _has_secret_key(metadata: dict[str, Any], redact_keys: frozenset[str]) -> bool:
    """Whether a key of this (flat) metadata is a redact key, in any case."""
    known = _PLAIN_KEYS.get(redact_keys)
    if known is None:
        known = _PLAIN_KEYS.setdefault(redact_keys, set())
    elif known.issuperset(metadata):
        return False
    if not redact_keys.isdisjoint(map(str.lower, metadata)):
        return True
    if len(known) < PLAIN_KEYS_KEPT:
        known.update(key for key in metadata if len(key) <= PLAIN_KEY_CHARS)
    return False
