"""The audit event (wire format v1): validation, encoding, and decoding of stream entries.

Producers build events with ``AuditEvent``; the worker decodes every stream entry again
with ``decode_entry`` because producers in other languages write to the stream directly
and are never trusted. The client, the HTTP ingest and the worker share this one model,
so "queued" means "will be stored": it refuses up front what Postgres would refuse later
(text and jsonb strings cannot hold NUL, inet has no IPv6 zone id, timestamptz needs a
UTC value Python can hold, jsonb has no NaN or Infinity) and metadata nested deeper than
MAX_METADATA_DEPTH.
"""

from __future__ import annotations

import math
import re
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
import uuid_utils
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from uuid_utils.compat import uuid7

from auditq.redact import DEFAULT_KEY_SET, REDACTED, has_secret, redact

# Namespace for ids derived from stream entry ids (events that came without an id):
# the same entry always maps to the same UUID, so a redelivery cannot make a second row.
ENTRY_ID_NAMESPACE = uuid.UUID("6f1c3d2e-8a4b-5c6d-9e0f-a1b2c3d4e5f6")

Category = Literal["normal", "critical"]
Outcome = Literal["success", "failure", "denied"]
_Short = Field(default=None, max_length=256)
TEXT_FIELDS = (
    "action", "actor_type", "actor_id", "target_type", "target_id", "tenant_id",
    "user_agent", "request_id",
)  # fmt: skip
# Levels of nesting metadata may have, itself included ({"a": {"b": 1}} is 2). Generous for
# audit data, and far below what any JSON parser on the way (the worker's, the dashboard's,
# Postgres') refuses or recurses on.
MAX_METADATA_DEPTH = 32
# The longest integer the worker's JSON parser reads (and Python converts to text).
_INT_DIGITS = 4300
_INT_BOUND = 10**_INT_DIGITS


class EventError(ValueError):
    """An event that cannot be accepted; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AuditEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # uuid-utils' uuid7 (Rust): monotonic in a process without running ahead of the clock
    # in a burst, as uuid6's did, a plain uuid.UUID, and half the cost.
    id: uuid.UUID = Field(default_factory=uuid7)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    action: str = Field(min_length=1, max_length=256)
    category: Category = "normal"
    actor_type: str | None = _Short
    actor_id: str | None = _Short
    target_type: str | None = _Short
    target_id: str | None = _Short
    tenant_id: str | None = _Short
    outcome: Outcome | None = None
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=1024)
    request_id: str | None = _Short
    metadata: dict[str, Any] = Field(default_factory=dict)
    # The ciphertext of the personal fields (auditq/pii) as the ``pii`` column's JSON text,
    # set by auditq's own writers just before a store insert (no validation): never
    # accepted from a producer.
    pii: str | None = Field(default=None, exclude=True)

    @field_validator("pii")
    @classmethod
    def _not_from_producers(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("is set by auditq when it stores the event, never by a producer")
        return None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # A naive timestamp is ambiguous in a forensic record; producers must say UTC.
        if value.tzinfo is None:
            raise ValueError("must include a timezone offset (RFC 3339)")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+14:00 is in year 0 in UTC
            raise ValueError("is out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _text(self) -> AuditEvent:
        # One call for all the text fields, not one per field: pydantic-core's call into
        # Python costs more than the check, and every client event and entry passes here.
        for name in TEXT_FIELDS:
            value = self.__dict__[name]
            if value is not None and "\x00" in value:
                nul = PydanticCustomError("value_error", "must not contain NUL characters")
                error = InitErrorDetails(type=nul, loc=(name,), input=value)
                raise ValidationError.from_exception_data(type(self).__name__, [error])
        return self

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None and not _is_inet(value):
            raise ValueError("must be an IPv4 or IPv6 address (no zone id)")
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        return value

    @field_validator("metadata")
    @classmethod
    def _storable(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not value:
            return value
        problem = _unstorable(value, 1)
        if problem:
            raise ValueError(problem)
        # Secrets are replaced here, in the one model every path validates with, so none
        # reaches the queue, the table or a log (auditq/redact.py). Callers pass the
        # configured keys as validation context; without it the defaults apply.
        keys = info.context.get("redact_keys", DEFAULT_KEY_SET) if info.context else DEFAULT_KEY_SET
        return redact(value, keys) if keys and has_secret(value, keys) else value

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def _is_inet(value: str) -> bool:
    """Whether Postgres' inet takes this address. inet_pton is C and ~20x faster than
    ipaddress (every entry is checked again by the worker), and it refuses what inet
    refuses too: an IPv6 zone id such as fe80::1%eth0, which ipaddress accepts."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


def _unstorable(value: dict | list | tuple | set | frozenset, depth: int) -> str | None:
    """Why jsonb cannot hold this container (None when it can); one pass, no recursion
    past MAX_METADATA_DEPTH, so a hostile depth (or a cycle) costs no more than a shallow one.

    Besides JSON's types it looks into what the Python client serializes as JSON too:
    tuples and sets become arrays, bytes become strings. Exact types are tested first:
    every event passes here, and they are what JSON gives.
    """
    if depth > MAX_METADATA_DEPTH:
        return f"is nested deeper than {MAX_METADATA_DEPTH} levels"
    if isinstance(value, dict):
        for key in value:
            if type(key) is str:  # what JSON and Python code give, tested first
                if "\x00" in key:
                    return "keys must not contain NUL characters"
            elif isinstance(key, str | bytes) and _has_nul(key):
                return "keys must not contain NUL characters"
        items: Iterable[Any] = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return "strings must not contain NUL characters"
        elif kind is bool or item is None:
            pass
        elif isinstance(item, str | bytes):
            if _has_nul(item):
                return "strings must not contain NUL characters"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, int):
            if not -_INT_BOUND < item < _INT_BOUND:
                return f"integers must have at most {_INT_DIGITS} digits"
        elif isinstance(item, dict | list | tuple | set | frozenset):
            problem = _unstorable(item, depth + 1)
            if problem:
                return problem
    return None


def _has_nul(text: str | bytes) -> bool:
    return "\x00" in text if isinstance(text, str) else b"\x00" in text


def _field_error(error: ValidationError) -> EventError:
    first = error.errors(include_input=False, include_url=False)[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else "event"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return EventError(field, message)


def build_event(
    data: dict[str, Any] | AuditEvent, redact_keys: frozenset[str] = DEFAULT_KEY_SET
) -> AuditEvent:
    """Validate a dict into an event, raising EventError that names the bad field.

    An event built already (``AuditEvent(...)``) was validated with the default redact
    keys; it is redacted again with ``redact_keys``, the configured ones.
    """
    if isinstance(data, AuditEvent):
        if redact_keys and has_secret(data.metadata, redact_keys):
            return data.model_copy(update={"metadata": redact(data.metadata, redact_keys)})
        return data
    if not isinstance(data, dict):
        raise EventError("event", "must be a JSON object")
    try:
        return AuditEvent.model_validate(data, context={"redact_keys": redact_keys})
    except ValidationError as error:
        raise _field_error(error) from None


def encode(event: AuditEvent, max_bytes: int) -> str:
    """The stream payload (the event's JSON without its nulls); refuses events over the cap.

    orjson writes it in less than half the model's time; what orjson refuses (sets, bytes,
    integers over 64 bits, keys that are not strings) the model's serializer writes."""
    try:
        raw = _dumps(event.__dict__)
    except orjson.JSONEncodeError:
        raw = event.to_json().encode()
    if len(raw) > max_bytes:
        raise EventError("event", f"is {len(raw)} bytes, over the {max_bytes}-byte limit")
    return raw.decode()


def _dumps(values: dict[str, Any]) -> bytes:
    """An event's values as its payload: orjson, without the nulls and the ``pii``."""
    return orjson.dumps(
        {k: v for k, v in values.items() if v is not None and k != "pii"},
        option=orjson.OPT_UTC_Z,
    )


@dataclass
class Encoded:
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
) -> Encoded:
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
    encoded = Encoded(
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
        msgspec.convert(data, _Wire)  # the types, limits and names of the fields
    except msgspec.ValidationError:
        return None
    if when.tzinfo is not UTC:
        try:
            when = when.astimezone(UTC)
        except OverflowError:
            return None
    ip = data.get("ip")
    if ip is not None and not _is_inet(ip):
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
        return _assemble({**_BLANK, **values, **own}, set(data))
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
    (decoded,) = decode_entries([(entry_id, fields)], max_bytes, redact_keys, shard)
    if isinstance(decoded, Exception):
        raise decoded
    return decoded


def decode_entries(
    entries: Sequence[tuple[str, Mapping[Any, bytes | str]]],
    max_bytes: int,
    redact_keys: frozenset[str] = DEFAULT_KEY_SET,
    shard: int = 0,
) -> list[AuditEvent | Exception]:
    """``decode_entry`` for a batch of (entry id, fields): each entry's event, or the error
    that keeps it out (EventError for a producer's mistake; anything else it raised)."""
    raws = [_payload(fields) for _, fields in entries]
    survey = _Survey.of([raw for raw in raws if raw is not None])
    out: list[AuditEvent | Exception] = []
    for (entry_id, _), raw in zip(entries, raws, strict=True):
        try:
            out.append(_decode(entry_id, raw, max_bytes, redact_keys, shard, survey))
        except Exception as error:  # whatever it is, it is this entry's fault
            out.append(error)
    return out


def _payload(fields: Mapping[Any, bytes | str]) -> bytes | None:
    raw = fields.get(b"event", fields.get("event"))
    return raw.encode() if isinstance(raw, str) else raw


def _decode(
    entry_id: str,
    raw: bytes | None,
    max_bytes: int,
    redact_keys: frozenset[str],
    shard: int,
    survey: _Survey,
) -> AuditEvent:
    if raw is None:
        raise EventError("event", "stream entry has no 'event' field")
    if len(raw) > max_bytes:
        raise EventError("event", f"is {len(raw)} bytes, over the {max_bytes}-byte limit")
    event = _fast_from_json(raw, entry_id, shard, redact_keys, survey)
    # The model decides what the fast path was not sure of, and names the bad field.
    return event if event is not None else model_decode(raw, entry_id, shard, redact_keys)


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
        raise _field_error(error) from None
    # What the producer left out is taken from the entry, so a redelivery maps to the same row.
    missing: dict[str, Any] = {}
    if "id" not in event.model_fields_set:
        missing["id"] = derived_id(entry_id, shard)
    if "occurred_at" not in event.model_fields_set:
        missing["occurred_at"] = entry_time(entry_id)
    return event.model_copy(update=missing) if missing else event


def stored_copy(event: AuditEvent, changes: dict[str, Any]) -> AuditEvent:
    """A copy of a validated event with ``changes`` and no validation, for auditq's own
    steps after it (auditq/pii). What ``model_copy(update=...)`` does, less its generic
    copying of every attribute: the drain calls it for every row with personal fields."""
    return _assemble({**event.__dict__, **changes}, event.__pydantic_fields_set__)


def _assemble(values: dict[str, Any], fields_set: set[str] | None = None) -> AuditEvent:
    """An event from values that are valid already, in field order (no validation)."""
    event = AuditEvent.__new__(AuditEvent)
    object.__setattr__(event, "__dict__", values)
    # The fast path fills every field (what was missing, from the entry or a default).
    fields = set(_ALL_FIELDS) if fields_set is None else fields_set
    object.__setattr__(event, "__pydantic_fields_set__", fields)
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event


# --- the worker's fast path ------------------------------------------------------------------
# The worker decodes every stream entry again, and the model is slow there: pydantic-core
# calls its Python validators once per field. msgspec checks the same types and limits in
# C; the few checks it has no word for (NUL, inet, a time Python can hold in UTC, storable
# metadata, secrets) follow in plain Python, and most of them are settled for a whole batch
# by looking at its bytes once. Whatever this path is not sure of goes to the model, the
# reference, which accepts it or names the bad field: so the two give the same event for
# the same entry (tests/auditq/test_events_fast_path.py compares them on valid and hostile
# input alike). The clients' ``log_many`` has its own fast path for Python dicts, on the
# same ``_Wire`` (``encode_batch``, above); the HTTP ingest's dicts go to the model.

_ShortText = Annotated[str, msgspec.Meta(max_length=256)] | None


class _Wire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """AuditEvent's fields (no ``pii``: never from a producer), in its order, with its limits."""

    # Unset when absent (filled in after); null is refused, as the model refuses it.
    id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)] | msgspec.UnsetType = msgspec.UNSET
    action: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    category: Category = "normal"
    actor_type: _ShortText = None
    actor_id: _ShortText = None
    target_type: _ShortText = None
    target_id: _ShortText = None
    tenant_id: _ShortText = None
    outcome: Outcome | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    request_id: _ShortText = None
    metadata: dict[str, Any] | None = None


_WIRE = msgspec.json.Decoder(_Wire)
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
        return cls(b"\\u" not in joined, _LONG_FRACTION.search(joined) is not None)


def _fast_from_json(
    raw: bytes, entry_id: str, shard: int, redact_keys: frozenset[str], survey: _Survey
) -> AuditEvent | None:
    if survey.long_fractions and _LONG_FRACTION.search(raw):
        return None
    try:
        values = msgspec.structs.asdict(_WIRE.decode(raw))
    except (msgspec.MsgspecError, ValueError):  # ValueError: invalid UTF-8
        return None
    if not _checked(values, redact_keys, raw if survey.unescaped else b""):
        return None
    # What the producer left out is taken from the entry, so a redelivery maps to the same row.
    if values["id"] is msgspec.UNSET:
        values["id"] = derived_id(entry_id, shard)
    if values["occurred_at"] is msgspec.UNSET:
        values["occurred_at"] = entry_time(entry_id)
    return _assemble(values)


def _checked(values: dict[str, Any], redact_keys: frozenset[str], plain: bytes) -> bool:
    """Finish the model's checks on msgspec's values, in place; False if unsure or invalid.

    ``plain``: the entry's JSON if it has no \\u escape (else empty), so that no string in
    it holds a NUL, and its brackets and length bound what its metadata can hold."""
    if not plain:
        for name in TEXT_FIELDS:
            text = values[name]
            if text is not None and "\x00" in text:
                return False
    when = values["occurred_at"]
    if when is not msgspec.UNSET and when.tzinfo is not UTC:
        try:
            values["occurred_at"] = when.astimezone(UTC)
        except OverflowError:
            return False
    if values["ip"] is not None and not _is_inet(values["ip"]):
        return False
    metadata = values["metadata"]
    if metadata is None:
        values["metadata"] = {}
    elif metadata:
        # Two brackets are the event's and its metadata's own: metadata of plain values,
        # which msgspec read as JSON (finite floats), short enough to hold no huge integer.
        if plain and plain.count(b"{") + plain.count(b"[") == 2 and len(plain) <= _INT_DIGITS:
            secret = not redact_keys.isdisjoint(map(str.lower, metadata))
        elif _unstorable(metadata, 1) is not None:
            return False
        else:
            secret = bool(redact_keys) and has_secret(metadata, redact_keys)
        if secret:
            values["metadata"] = redact(metadata, redact_keys)
    values["pii"] = None
    return True


def to_row(event: AuditEvent, ingest_path: Literal["queue", "direct"]) -> dict[str, Any]:
    """The ``audit_logs`` row for an event (JSON-ready values)."""
    row = event.model_dump(mode="json")
    row["pii"] = event.pii
    row["ingest_path"] = ingest_path
    return row


ROW_COLUMNS = (*AuditEvent.model_fields, "ingest_path")
_ALL_FIELDS = set(AuditEvent.model_fields)
# Every field unset, in the model's order, but for its defaults that are not computed.
_BLANK: dict[str, Any] = {**dict.fromkeys(AuditEvent.model_fields), "category": "normal"}
