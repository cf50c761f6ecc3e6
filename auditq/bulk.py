"""``log_many``'s validation and encoding of a call's events, fast for plain Python dicts.

``encode_batch`` gives what ``build_event`` then ``encode`` (auditq/events.py) give for each
event, and raises the same first EventError before anything is sent; the model decides
whatever this path is not sure of (tests/auditq/test_bulk.py holds the two to the same
answer).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import uuid_utils

from auditq.events import AuditEvent, Wire, assemble, build_event, encode, in_utc, is_inet
from auditq.redact import DEFAULT_KEY_SET, REDACTED, redact


@dataclass
class EncodedBatch:
    """The events of one ``log_many`` call, validated and encoded (``encode_batch``): each
    one's payload, id as text, category and tenant. The ``AuditEvent`` itself is built
    only when asked for (a direct write), which most events never are."""

    payloads: list[str]
    ids: list[str]
    categories: list[str]
    tenants: list[str | None]
    # The event, or what it is built from: the producer's dict and its payload's values.
    _made: list[AuditEvent | tuple[dict[str, Any], dict[str, Any]]]

    def event(self, i: int) -> AuditEvent:
        made = self._made[i]
        if not isinstance(made, AuditEvent):
            made = self._made[i] = _plain_event(*made)
        return made


def encode_batch(
    items: Sequence[dict[str, Any] | AuditEvent],
    max_bytes: int,
    redact_keys: frozenset[str] = DEFAULT_KEY_SET,
) -> EncodedBatch:
    """``build_event`` then ``encode`` for each of a ``log_many`` call's events: the same
    events and payloads, and the same first EventError, raised before either is returned.

    The fast path, for plain dicts (the common case): msgspec checks the fields' types and
    limits, a few Python checks follow (``_plain_values``), the payload is written, and
    then what the model's metadata checks would walk value by value is read off the
    payloads' bytes at once: no ``\\u0000`` (orjson spells a NUL so), no ``null`` (orjson
    writes NaN and Infinity so), no bracket but the event's and its metadata's (so flat
    metadata, whose top-level keys were all the secrets it could hold); integers past 64
    bits, bytes and sets orjson refuses. What this leaves unsure goes to the model.
    """
    fast = [_plain_values(item, redact_keys) if type(item) is dict else None for item in items]
    raws = [_fast_dumps(values) for values in fast]
    if None in raws or not _plain_json(b"\n".join(raws), len(raws)):  # type: ignore[arg-type]
        # Some payloads are not plain: sort them out one by one (rare: not on every call).
        raws = [raw if raw is not None and _plain_json(raw, 1) else None for raw in raws]
    made: list[AuditEvent | tuple[dict[str, Any], dict[str, Any]]] = []
    for item, values, raw in zip(items, fast, raws, strict=True):
        if raw is None or values is None:  # unsure: the model accepts it or names the bad field
            made.append(build_event(item, redact_keys))
        else:
            made.append((item, values))  # type: ignore[arg-type]  # a dict: _plain_values took it
    plain = [m[1] if isinstance(m, tuple) else m.__dict__ for m in made]
    encoded = EncodedBatch(
        [],
        [v["id"] if type(v["id"]) is str else str(v["id"]) for v in plain],
        [v["category"] for v in plain],
        [v.get("tenant_id") for v in plain],
        made,
    )
    encoded.payloads = [
        raw.decode()
        if raw is not None and len(raw) <= max_bytes
        # Refused (over the size bound), or written by the model: as ``encode`` does.
        else encode(encoded.event(i), max_bytes)
        for i, raw in enumerate(raws)
    ]
    return encoded


# The payload's fields in order.
_PAYLOAD = tuple(name for name in AuditEvent.model_fields if name != "pii")


def _plain_values(data: dict[str, Any], redact_keys: frozenset[str]) -> dict[str, Any] | None:
    """The event's payload values in field order (its id as text), checked but for what
    ``encode_batch`` reads off the payload; None if unsure (or invalid: the model says why).

    An id or a time given as text goes to the model (each parses it by its own rules), and
    so does a mapping for metadata that is not a dict (msgspec takes it, the model not)."""
    given_id = data.get("id")
    # The model's default time, or the given one (None too: the model refuses it).
    when = data["occurred_at"] if "occurred_at" in data else datetime.now(UTC)
    metadata = data.get("metadata")
    if (
        (given_id is not None and type(given_id) is not uuid.UUID)
        or type(when) is not datetime
        or (metadata is not None and type(metadata) is not dict)
    ):
        return None
    try:
        msgspec.convert(data, Wire)  # the types, limits and names of the fields
    except msgspec.ValidationError:
        return None
    if when.tzinfo is not UTC and (when := in_utc(when)) is None:
        return None
    ip = data.get("ip")
    if ip is not None and not is_inet(ip):
        return None
    if not metadata:
        metadata = {}
    elif not redact_keys.isdisjoint(map(str.lower, metadata)):
        metadata = redact(metadata, redact_keys)
    # else the producer's own dict: written now, and copied if an event is built of it
    values = _payload_template(tuple(data)).copy()
    values.update(data)
    values["id"] = given_id or str(uuid_utils.uuid7())  # the model's generator: in time order
    values["occurred_at"] = when
    values["metadata"] = metadata
    if None in values.values():
        return {k: v for k, v in values.items() if v is not None}
    return values


def _payload_template(given: tuple[str, ...]) -> dict[str, Any]:
    """An event of these keys' payload keys, in field order, with the default category:
    one step per call of each shape (producers use few), not one per key of each event."""
    template = _TEMPLATES.get(given)
    if template is None:
        if len(_TEMPLATES) >= _MAX_TEMPLATES:  # a bound on what odd callers can make it hold
            _TEMPLATES.clear()
        keys = {*given, *_ALWAYS}
        template = {name: None for name in _PAYLOAD if name in keys}
        template["category"] = "normal"
        _TEMPLATES[given] = template
    return template


_ALWAYS = ("id", "occurred_at", "category", "metadata")  # in every payload
_TEMPLATES: dict[tuple[str, ...], dict[str, Any]] = {}
_MAX_TEMPLATES = 1024


def _plain_event(data: dict[str, Any], values: dict[str, Any]) -> AuditEvent:
    """The event ``_plain_values`` gave the payload ``values`` of: the model's own."""
    event_id = values["id"]
    if type(event_id) is str:  # made by _plain_values: canonical text, no need to parse it
        event_id = _uuid(int(event_id.replace("-", ""), 16))
    if _PLAIN_VALUE_TYPES.issuperset(map(type, data.values())):
        # Its own metadata, as the model's event has (the producer's dict may change).
        own = {"id": event_id, "metadata": dict(values["metadata"])}
        return assemble({**_BLANK, **values, **own}, set(data))
    # A str subclass, which the model turns into str: let it, keeping the id and time, and
    # the metadata as redacted already.
    keep = {"id": event_id, "occurred_at": values["occurred_at"], "metadata": values["metadata"]}
    event = AuditEvent.model_validate({**data, **keep}, context={"redact_keys": frozenset()})
    object.__setattr__(event, "__pydantic_fields_set__", set(data))
    return event


# What a plain event's values are (_plain_values took them): a str subclass is not.
_PLAIN_VALUE_TYPES = frozenset({str, dict, datetime, uuid.UUID, type(None)})


def _uuid(number: int) -> uuid.UUID:
    """``uuid.UUID(int=number)`` without its argument checks (as uuid-utils makes its own)."""
    value = object.__new__(uuid.UUID)
    object.__setattr__(value, "int", number)
    object.__setattr__(value, "is_safe", _UNKNOWN_SAFETY)
    return value


_UNKNOWN_SAFETY = uuid.SafeUUID.unknown  # an Enum member: looking it up costs 0.3 us
_QUOTED_REDACTED = orjson.dumps(REDACTED)


def _fast_dumps(values: dict[str, Any] | None) -> bytes | None:
    if values is None:
        return None
    try:
        return orjson.dumps(values, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return None


def _plain_json(raw: bytes, events: int) -> bool:
    """Whether these payloads (of this many events) hold no NUL, no NaN or Infinity, and no
    metadata but flat (brackets in strings make it say no: unsure, never wrong; but for the
    redacted values', whose bracket follows a quote, so cannot be JSON's)."""
    brackets = raw.count(b"{") + raw.count(b"[") - raw.count(_QUOTED_REDACTED)
    return b"\\u0000" not in raw and b"null" not in raw and brackets == 2 * events


# Every field unset, in the model's order, but for its defaults that are not computed.
_BLANK: dict[str, Any] = {**dict.fromkeys(AuditEvent.model_fields), "category": "normal"}
