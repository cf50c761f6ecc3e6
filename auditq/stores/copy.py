"""COPY in binary format: how the postgres store sends its rows (bench/drain.py's raw COPY
baseline sends them so too, being at its best only so).

Against text COPY of the same rows, the client spends half the CPU per row (no value is
turned into text and escaped) and Postgres about a tenth less (no uuid or timestamptz is
parsed from text): bench/RESULTS.md, "Binary COPY". Each value goes in the binary form of
its column's type, so the columns whose values are not that type on our side have a dumper
of their own here: ip (an address ``events.is_inet`` accepted), and metadata and pii as
jsonb. A batch's stream can also be made ahead of its COPY (``copy_data``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg._copy_base import BinaryFormatter
from psycopg.adapt import AdaptersMap, Dumper, Transformer
from psycopg.pq import Format

from auditq.stores.encoding import dumps


class InetTextDumper(Dumper):
    """inet's binary form of an address alone (no prefix: is_inet refuses one): family
    (Postgres' own numbers, 2 and 3), bits, is_cidr, length, then the address."""

    format = Format.BINARY
    oid = psycopg.adapters.types["inet"].oid

    def dump(self, obj: str) -> bytes:
        try:
            if ":" in obj:
                return b"\x03\x80\x00\x10" + socket.inet_pton(socket.AF_INET6, obj)
            return b"\x02\x20\x00\x04" + socket.inet_pton(socket.AF_INET, obj)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            # The row's fault, classified so; the value is not quoted (it is personal data).
            raise psycopg.DataError("ip is not an address inet takes") from None


class JsonbDumper(Dumper):
    """jsonb's binary form: a version byte, then JSON text, which the server parses as it
    parses text COPY's. Takes the text itself (pii's, written by auditq/pii) or a value to
    write as JSON (metadata's dict, by orjson)."""

    format = Format.BINARY
    oid = psycopg.adapters.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + (obj.encode() if type(obj) is str else dumps(obj))


def _with_dumpers(adapters: AdaptersMap) -> AdaptersMap:
    adapters.register_dumper(None, InetTextDumper)
    adapters.register_dumper(None, JsonbDumper)
    return adapters


def use_dumpers(cur: psycopg.Cursor) -> None:
    """The dumpers above, for this cursor's COPYs. Registered on this cursor only and by
    type only: they serve COPY's set_types, never a query's parameters (a str parameter
    stays text)."""
    _with_dumpers(cur.adapters)


@contextmanager
def binary_copy(
    cur: psycopg.Cursor, table: str, columns: Sequence[str], types: Sequence[str]
) -> Iterator[psycopg.Copy]:
    """A binary COPY into ``table``; ``types`` names each column's type (inet and jsonb
    columns take text, as above). Declared once per COPY, so no value's dumper is looked up
    by its Python type."""
    use_dumpers(cur)
    with cur.copy(_statement(table, columns)) as copy:
        copy.set_types(types)
        yield copy


def _statement(table: str, columns: Sequence[str]) -> str:
    return f"copy {table} ({', '.join(columns)}) from stdin (format binary)"


# For copy_data: psycopg's global adapters and the dumpers above, on a map of our own.
_ADAPTERS = _with_dumpers(AdaptersMap(psycopg.adapters))


def copy_data(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> bytes:
    """The whole binary COPY stream of ``rows`` (header, rows, trailer), made without a
    connection, for ``write_copy_data`` to send later.

    The drain makes it on its prefetch thread while the batch before is being copied, so
    the thread that copies holds the GIL for little more than the sending: 1.025x the
    events a second of one worker, 20 wins in 30 paired drains (bench/HISTORY.md, issue 12,
    session 15). psycopg's public ``Copy`` formats only on a cursor of a connection, and
    that connection is busy with the COPY in progress, so this drives the formatter
    ``Copy`` uses itself (a private module: psycopg is pinned in requirements.txt, and the
    store's tests cover this path).
    Raises what the dumpers raise (psycopg.DataError) for a value its column cannot take.
    """
    transformer = Transformer(_ADAPTERS)
    transformer.set_dumper_types([_ADAPTERS.types[name].oid for name in types], Format.BINARY)
    formatter = BinaryFormatter(transformer)
    # write_row hands back its buffer each time that fills (32 KiB), b"" in between.
    parts = [formatter.write_row(row) for row in rows]
    parts.append(formatter.end())
    return b"".join(parts)


def write_copy_data(cur: psycopg.Cursor, table: str, columns: Sequence[str], data: bytes) -> None:
    """COPY a stream ``copy_data`` made into ``table``."""
    with cur.copy(_statement(table, columns)) as copy:
        copy.write(data)
