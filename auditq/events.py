"""The audit event (wire format v1): the model, its validation and its stream payload.

Producers build events with ``AuditEvent``; the worker decodes every stream entry again
(auditq/decoding.py) because producers in other languages write to the stream directly
and are never trusted. The client, the HTTP ingest and the worker share this one model,
so "queued" means "will be stored": it refuses up front what Postgres would refuse later
(text and jsonb strings cannot hold NUL, inet has no IPv6 zone id, timestamptz needs a
UTC value Python can hold, jsonb has no NaN or Infinity) and metadata nested deeper than
MAX_METADATA_DEPTH.

Two fast paths stand in for the model where it is slow, and answer to it (their tests
compare them with it on valid and hostile input alike): ``log_many``'s for a call's
Python dicts (auditq/bulk.py) and the worker's for stream entries (auditq/decoding.py).
Both check types and limits with msgspec, on ``Wire`` (below), the model's fields as
msgspec reads them.
"""

from __future__ import annotations

import math
import socket
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
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

from auditq.redact import DEFAULT_KEY_SET, has_secret, redact

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
INT_DIGITS = 4300
_INT_BOUND = 10**INT_DIGITS


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
        utc = in_utc(value)
        if utc is None:
            raise ValueError("is out of range once converted to UTC")
        return utc

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
        if value is not None and not is_inet(value):
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
        problem = unstorable(value, 1)
        if problem:
            raise ValueError(problem)
        # Secrets are replaced here, in the one model every path validates with, so none
        # reaches the queue, the table or a log (auditq/redact.py). Callers pass the
        # configured keys as validation context; without it the defaults apply.
        keys = info.context.get("redact_keys", DEFAULT_KEY_SET) if info.context else DEFAULT_KEY_SET
        return redact(value, keys) if keys and has_secret(value, keys) else value

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def in_utc(value: datetime) -> datetime | None:
    """An aware time in UTC, or None when that is outside the years Python holds
    (0001-01-01T00:00+14:00 is in year 0 in UTC): the model refuses those, and the fast
    paths (auditq/decoding.py, auditq/bulk.py) leave them to it."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


def is_inet(value: str) -> bool:
    """Whether Postgres' inet takes this address. inet_pton is C and ~20x faster than
    ipaddress (every entry is checked again by the worker), and it refuses what inet
    refuses too: an IPv6 zone id such as fe80::1%eth0, which ipaddress accepts."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


def unstorable(value: dict | list | tuple | set | frozenset, depth: int) -> str | None:
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
                return f"integers must have at most {INT_DIGITS} digits"
        elif isinstance(item, dict | list | tuple | set | frozenset):
            problem = unstorable(item, depth + 1)
            if problem:
                return problem
    return None


def _has_nul(text: str | bytes) -> bool:
    return "\x00" in text if isinstance(text, str) else b"\x00" in text


def field_error(error: ValidationError) -> EventError:
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
        raise field_error(error) from None


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


# BaseModel's slots (``__dict__`` among them), set through their own descriptors:
# ``object.__setattr__`` on a model (whose class defines __setattr__) first walks the
# class's bases to check it may bypass it. That was ~3,800 of the ~8,000 instructions
# building an event took in the worker's decode (callgrind, as bench/instructions.py counts).
_SET_DICT = BaseModel.__dict__["__dict__"].__set__
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def assemble(values: dict[str, Any], fields_set: set[str] | None = None) -> AuditEvent:
    """An event from values that are valid already, in field order (no validation)."""
    event = object.__new__(AuditEvent)
    _SET_DICT(event, values)
    # The fast paths fill every field (what was missing, from the entry or a default).
    _SET_FIELDS_SET(event, set(ALL_FIELDS) if fields_set is None else fields_set)
    _SET_EXTRA(event, None)
    _SET_PRIVATE(event, None)
    return event


# --- the model's fields as msgspec reads them: the fast paths' first check ------------------
# (auditq/bulk.py for log_many's dicts, auditq/decoding.py for stream entries)

_ShortText = Annotated[str, msgspec.Meta(max_length=256)] | None


class Wire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
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


def to_row(event: AuditEvent, ingest_path: Literal["queue", "direct"]) -> dict[str, Any]:
    """The ``audit_logs`` row for an event (JSON-ready values)."""
    row = event.model_dump(mode="json")
    row["pii"] = event.pii
    row["ingest_path"] = ingest_path
    return row


ROW_COLUMNS = (*AuditEvent.model_fields, "ingest_path")
ALL_FIELDS = set(AuditEvent.model_fields)
# An event as the stores write it: its values in ROW_COLUMNS order (metadata a dict, pii the
# JSON text of its ciphertext or None, ingest_path last). The worker decodes stream entries
# straight into rows (auditq/decoding.py), with no model in between; a client's events
# become rows just before an insert (``event_row``). A list, so that the steps before the
# insert (auditq/pii) set a value in place.
Row = list[Any]
COLUMN = {name: index for index, name in enumerate(ROW_COLUMNS)}


def event_row(event: AuditEvent, ingest_path: Literal["queue", "direct"]) -> Row:
    """A validated event's row (its __dict__ holds exactly its fields, in order)."""
    return [*event.__dict__.values(), ingest_path]


def row_event(row: Row) -> AuditEvent:
    """The event a row holds, all but its ingest path (no validation: rows are made of
    valid events and entries)."""
    return assemble(dict(zip(AuditEvent.model_fields, row[:-1], strict=True)))
