"""What both stores share about ``public.audit_seals``: its columns and one record shape.

A seal record is a dict with SEAL_COLUMNS as keys: ``seal_no``, ``row_count`` and the
``*_txid`` bounds as ints, ``sealed_at`` an aware datetime, the hashes, keys, signature and
leaves as bytes (``leaves`` absent when not asked for).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SEAL_COLUMNS = (
    "seal_no",
    "prev_hash",
    "from_txid",
    "to_txid",
    "row_count",
    "total_rows",
    "root",
    "sealed_at",
    "public_key",
    "hash",
    "signature",
    "leaves",
)
_INTS = ("seal_no", "from_txid", "to_txid", "row_count", "total_rows")
_BYTES = ("prev_hash", "root", "public_key", "hash", "signature", "leaves")


def seal_record(raw: dict[str, Any]) -> dict[str, Any]:
    """Normalise a seal as either store reads it (psycopg values or PostgREST JSON)."""
    out: dict[str, Any] = {}
    for column in SEAL_COLUMNS:
        if column not in raw:
            continue
        value = raw[column]
        if column in _INTS:
            value = int(value)
        elif column in _BYTES:
            value = from_bytea(value)
        elif column == "sealed_at":
            value = datetime.fromisoformat(value) if isinstance(value, str) else value
            value = value.astimezone(UTC)
        out[column] = value
    return out


def from_bytea(value: Any) -> bytes:
    """bytes from psycopg, or PostgREST's ``\\x<hex>`` text of a bytea."""
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("\\x"))
    return bytes(value)


def to_bytea(value: bytes) -> str:
    """PostgREST's text form of a bytea value."""
    return "\\x" + value.hex()
