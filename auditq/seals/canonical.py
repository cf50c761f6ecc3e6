"""The canonical form of a stored row, and the hashes built on it (format version 1).

The sealer has the database compute it (``public.audit_row_canonical``, hashed by
``public.audit_seal_leaves``: C speed, 48 bytes a row over the wire); verify rebuilds the
same bytes here, on its own, from the columns it reads through either store.

The canonical text is the JSON array of SEALED_COLUMNS' values, in that order, as
PostgreSQL's jsonb prints it (``jsonb_build_array(...)::text``):

- elements separated by ``", "``; SQL NULL as ``null``;
- every value but ``metadata`` is a JSON string: ``id`` as uuid text (lower case), times in
  UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fraction digits), ``ip`` as inet's
  text output (``192.0.2.7``, ``2001:db8::7``, ``10.0.0.0/8``), ``txid`` in decimal, the
  rest as stored; strings escape ``"``, ``\\`` and control characters (``\\n``, ``\\t``,
  ``\\u001f``, ...) and nothing else (UTF-8, no ``\\u`` for non-ASCII);
- ``metadata`` is jsonb's own text of the stored object (keys ordered by length then
  bytes, ``", "`` and ``": "`` separators, numbers as stored), read as ``metadata::text``
  by both stores, so no float is ever re-spelled;
- ``pii`` (the ciphertext of a row's personal fields, auditq/pii) is appended as an 18th
  element, its jsonb text read as ``pii::text``, only when it is not null: a row without
  it has the same 17-element form as before the column existed, so older seals verify.
  Seals thus cover the stored ciphertext, never the clear values: destroying a subject's
  data key (erasure) changes no hashed byte.

row hash  = SHA-256(b"auditq/row/v1\\0" + canonical text as UTF-8)
leaf      = id (16 raw bytes) + row hash (32 bytes)
root      = SHA-256(b"auditq/root/v1\\0" + row count as 8 bytes big-endian + leaves in order)
seal hash = SHA-256(b"auditq/seal/v1\\0" + compact JSON of the header, see seal_header)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any
from uuid import UUID

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
    "pii",  # appended only when not null (see above)
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


def timestamp(value: datetime | str) -> str:
    return parse_time(value).isoformat(timespec="microseconds")[:-6] + "Z"


# A JSON string as json.dumps(ensure_ascii=False) writes it (the C function behind it), which
# escapes exactly what jsonb does: quote, backslash, control characters.
_string = encode_basestring


_TEXT = SEALED_COLUMNS[3:15]  # action .. ingest_path: text (or null) as read
assert SEALED_COLUMNS[:3] == ("id", "occurred_at", "received_at")
assert SEALED_COLUMNS[15:] == ("metadata", "txid", "pii")


def canonical_row(row: Mapping[str, Any]) -> bytes:
    """``row``: SEALED_COLUMNS as a store reads them, ``metadata`` and ``pii`` as their
    jsonb text."""
    metadata = row["metadata"]
    if not isinstance(metadata, str):
        raise TypeError("metadata must be read as text (metadata::text)")
    # id, the times, metadata and txid are NOT NULL in the table; the rest may be null.
    parts = [
        _string(str(row["id"]).lower()),
        _string(timestamp(row["occurred_at"])),
        _string(timestamp(row["received_at"])),
        *["null" if (v := row.get(c)) is None else _string(str(v)) for c in _TEXT],
        metadata,
        _string(str(int(row["txid"]))),
    ]
    pii = row.get("pii")
    if pii is not None:
        if not isinstance(pii, str):
            raise TypeError("pii must be read as text (pii::text)")
        parts.append(pii)
    return ("[" + ", ".join(parts) + "]").encode()


def row_hash(row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(_ROW + canonical_row(row)).digest()


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
    return _compact(
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


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def seal_hash(seal: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(_SEAL + seal_header(seal)).digest()
