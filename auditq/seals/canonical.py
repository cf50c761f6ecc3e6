"""The canonical form of a stored row, and the hashes built on it (format version 1).

Both the sealer and the verifier compute these bytes from what they read, through either
store, so every value is first normalised to one text form whatever the reader returned:

- the row is a JSON array of SEALED_COLUMNS' values, in that order;
- ``id``: the UUID in lower-case 8-4-4-4-12 form (PostgreSQL's text output of uuid);
- times: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, the fraction (six digits) left out when the
  microseconds are zero (orjson's RFC 3339 form with OPT_UTC_Z);
- ``ip``: PostgreSQL's text output of inet (``192.0.2.7``, ``2001:db8::7``, ``10.0.0.1/8``),
  which is what both stores read (psycopg selects ``abbrev(ip)``; PostgREST sends that text);
- ``metadata``: the JSON object itself, keys sorted by code point;
- ``txid``: the decimal string of the inserting transaction's id;
- other columns: their text, or null;
- serialised by orjson with OPT_SORT_KEYS: keys sorted by code point, no whitespace, UTF-8
  without escaping non-ASCII, integers exact, floats shortest round-trip (``1e16``,
  ``0.1``). A row whose metadata holds an integer beyond 64 bits (orjson refuses those) is
  serialised by Python's json module instead (sort_keys, separators ``,``/``:``,
  ensure_ascii off), which writes it exactly. This is RFC 8785 (JCS) for everything audit
  rows hold except float spelling and key order beyond the BMP (UTF-16 in JCS).

row hash = SHA-256(b"auditq/row/v1\\0" + canonical bytes)
leaf     = id (16 raw bytes) + row hash (32 bytes)
root     = SHA-256(b"auditq/root/v1\\0" + row count as 8 bytes big-endian + leaves in order)
seal hash = SHA-256(b"auditq/seal/v1\\0" + canonical JSON of the seal header, see seal_header)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

# The columns a seal covers, in canonical order. Changing this list is a new format version.
SEALED_COLUMNS = (
    "id",
    "occurred_at",
    "received_at",
    "action",
    "category",
    "outcome",
    "actor_type",
    "actor_id",
    "target_type",
    "target_id",
    "tenant_id",
    "ip",
    "user_agent",
    "request_id",
    "ingest_path",
    "metadata",
    "txid",
)
LEAF_SIZE = 48
GENESIS = bytes(32)  # the prev_hash of seal 1

_ROW = b"auditq/row/v1\0"
_ROOT = b"auditq/root/v1\0"
_SEAL = b"auditq/seal/v1\0"


def parse_time(value: datetime | str) -> datetime:
    """An aware datetime in UTC from psycopg's datetime or PostgREST's ISO text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC)


_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z


def timestamp(value: datetime | str) -> str:
    return orjson.dumps(parse_time(value), option=_OPTIONS)[1:-1].decode()


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # an integer beyond 64 bits (in metadata): the stdlib writes it exactly
        return json.dumps(
            value,
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
            allow_nan=False,
            default=lambda v: timestamp(v) if isinstance(v, datetime) else repr(v),
        ).encode()


_TEXT = SEALED_COLUMNS[3:15]  # action .. ingest_path: text (or null) as read
assert SEALED_COLUMNS[:3] == ("id", "occurred_at", "received_at")
assert SEALED_COLUMNS[15:] == ("metadata", "txid")


def canonical_row(row: Mapping[str, Any]) -> bytes:
    # id, the times and txid are NOT NULL in the table; the rest may be null.
    values = [
        str(row["id"]).lower(),
        parse_time(row["occurred_at"]),
        parse_time(row["received_at"]),
        *[None if (v := row.get(c)) is None else str(v) for c in _TEXT],
        row.get("metadata"),
        str(int(row["txid"])),
    ]
    return _dumps(values)


def row_hash(row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(_ROW + canonical_row(row)).digest()


def leaf(row: Mapping[str, Any]) -> bytes:
    return UUID(str(row["id"])).bytes + row_hash(row)


def root(leaves: bytes) -> bytes:
    if len(leaves) % LEAF_SIZE:
        raise ValueError("leaves must be whole 48-byte entries")
    count = len(leaves) // LEAF_SIZE
    return hashlib.sha256(_ROOT + count.to_bytes(8, "big") + leaves).digest()


def split_leaves(leaves: bytes) -> dict[str, bytes]:
    """Row id (str) -> row hash, for one seal's leaves."""
    return {
        str(UUID(bytes=leaves[i : i + 16])): leaves[i + 16 : i + LEAF_SIZE]
        for i in range(0, len(leaves), LEAF_SIZE)
    }


def seal_header(seal: Mapping[str, Any]) -> bytes:
    """What a seal's hash covers: everything in it but its leaves (covered by the root),
    its hash and its signature. Byte strings in lower-case hex."""
    return _dumps(
        [
            int(seal["seal_no"]),
            seal["prev_hash"].hex(),
            str(int(seal["from_txid"])),
            str(int(seal["to_txid"])),
            int(seal["row_count"]),
            int(seal["total_rows"]),
            seal["root"].hex(),
            timestamp(seal["sealed_at"]),
            seal["public_key"].hex(),
        ]
    )


def seal_hash(seal: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(_SEAL + seal_header(seal)).digest()
