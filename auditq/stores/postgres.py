"""The ``postgres`` store: psycopg 3 on DATABASE_URL, COPY straight into the table.

COPY is the fastest way into Postgres, but it cannot skip rows that already exist. Almost
every batch is all new, so it is copied straight into ``audit_logs``; a batch that meets
an id already stored (a redelivery after a crash, two workers racing on a reclaim) fails
whole on the primary key, rolls back, and is sent again through a session temp table and
``INSERT ... SELECT ... ON CONFLICT (id, occurred_at) DO NOTHING``, which stores only the new
rows. The key holds occurred_at because the table is partitioned on it (a redelivered event
carries the same id and occurred_at: auditq.decoding.decode_entry derives both from the entry).

The worker has each batch's COPY stream made ahead (``encode_rows``), on the thread that
reads the next batch while this one is copied; ``insert_encoded`` sends it as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from auditq.events import ROW_COLUMNS, AuditEvent, Row, event_row
from auditq.seals.canonical import SEALED_COLUMNS
from auditq.stores import (
    MAX_QUERY_LIMIT,
    QUERY_COLUMNS,
    Cursor,
    DataRejected,
    Encoded,
    EventFilters,
    IngestPath,
    StoreUnavailable,
)
from auditq.stores.copy import binary_copy, copy_data, write_copy_data
from auditq.stores.encoding import dumps
from auditq.stores.seals import SEAL_COLUMNS, seal_record

# uuid, inet, jsonb and xid8 as the text PostgREST sends too (the canonical form uses it):
# abbrev() is inet's output function (an ip::text cast would always add the /32 netmask).
_SEALED = ", ".join(
    {
        "id": "id::text as id",
        "ip": "abbrev(ip) as ip",
        "metadata": "metadata::text as metadata",
        "txid": "txid::text as txid",
        "pii": "pii::text as pii",
    }.get(c, c)
    for c in SEALED_COLUMNS
)

_COLUMNS = ", ".join(ROW_COLUMNS)
# How a batch goes into a table: copy(cursor, table) (its rows, or its stream made ahead).
_Copy = Callable[[psycopg.Cursor, str], None]
_STAGING = "auditq_incoming"
# audit_logs' unique key (monthly partitions on occurred_at: supabase/migrations/*_partitions.sql).
_CONFLICT_KEY = "(id, occurred_at)"
# Each column's type, in ROW_COLUMNS order, for binary COPY (auditq/stores/copy.py).
COPY_TYPES = [
    {
        "id": "uuid",
        "occurred_at": "timestamptz",
        "ip": "inet",
        "metadata": "jsonb",
        "pii": "jsonb",
    }.get(name, "text")
    for name in ROW_COLUMNS
]


def classify(error: psycopg.Error) -> DataRejected | StoreUnavailable:
    """SQLSTATE class 22 (data exception) and 23 (integrity) are the rows' fault.

    psycopg raises DataError itself, with no SQLSTATE, for values it cannot send (NUL).
    """
    state = error.sqlstate or ""
    text = f"postgres {state or 'error'}: {_first_line(error)}"
    if state[:2] in ("22", "23") or isinstance(error, psycopg.DataError | psycopg.IntegrityError):
        return DataRejected(text)
    return StoreUnavailable(text)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def connect(dsn: str, timeout: float, name: str = "auditq", **kwargs: Any) -> psycopg.Connection:
    """A connection whose connect and every statement are bounded by ``timeout`` seconds."""
    return psycopg.connect(
        dsn,
        connect_timeout=max(1, round(timeout)),
        options=f"-c statement_timeout={int(timeout * 1000)}",
        application_name=name,
        **kwargs,
    )


class SharedConnection:
    """One connection, opened on first use, that callers on several threads take in turn.

    A connection left broken by an error (the server restarted, a backend was terminated)
    is dropped, so the next use reconnects instead of failing forever.
    """

    def __init__(self, dsn: str, timeout: float, name: str = "auditq", **kwargs: Any):
        self._open = lambda: connect(dsn, timeout, name, **kwargs)
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._open()
            try:
                yield self._conn
            except psycopg.Error:
                if self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str, timeout: float = 10.0):
        self._db = SharedConnection(dsn, timeout)
        # The data keys (auditq/pii) on a connection of their own, opened on first use: the
        # drain reads and creates the keys of batch N+1 on its prefetch thread while batch N
        # is copied on the other connection, rather than waiting for that COPY to end.
        self._keys_db = SharedConnection(dsn, timeout, "auditq-pii-keys")

    def insert_events(self, events: Sequence[AuditEvent], ingest_path: IngestPath = "queue") -> int:
        return self.insert_rows([event_row(event, ingest_path) for event in events])

    def insert_rows(self, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        return self._insert(len(rows), partial(_copy, rows=rows))

    def encode_rows(self, rows: Sequence[Row]) -> Encoded | None:
        """The batch's COPY stream, made ahead (``copy_data``). None when a row has a value
        its column cannot take (psycopg.DataError, or whatever else a dumper raises): the
        worker then sends the rows with ``insert_rows``, which fails the same way, and finds
        the row at fault as it finds rows the database refuses (worker/insert.py)."""
        try:
            return Encoded(len(rows), copy_data(rows, COPY_TYPES))
        except Exception:
            return None

    def insert_encoded(self, encoded: Encoded) -> int:
        copy = partial(write_copy_data, columns=ROW_COLUMNS, data=encoded.body)
        return self._insert(encoded.count, copy)

    def _insert(self, count: int, copy: _Copy) -> int:
        """``copy(cursor, table)`` COPYs the ``count`` rows into the table it is given."""
        try:
            with self._db.use() as conn:
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        copy(cur, "public.audit_logs")
                    return count
                except psycopg.errors.UniqueViolation:
                    return self._insert_new(conn, copy)
        except psycopg.Error as error:
            raise classify(error) from error

    def _insert_new(self, conn: psycopg.Connection, copy: _Copy) -> int:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                f"create temp table if not exists {_STAGING}"
                " (like public.audit_logs including defaults) on commit delete rows"
            )
            copy(cur, _STAGING)
            cur.execute(
                f"insert into public.audit_logs ({_COLUMNS})"
                f" select {_COLUMNS} from {_STAGING} on conflict {_CONFLICT_KEY} do nothing"
            )
            return cur.rowcount

    def ping(self) -> None:
        try:
            with self._db.use() as conn:
                conn.execute("select 1").fetchone()
                conn.rollback()
        except psycopg.Error as error:
            raise StoreUnavailable(f"postgres: {_first_line(error)}") from error

    def query_events(
        self, filters: EventFilters, before: Cursor | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The explorer's read: composed with psycopg.sql, every value a bound parameter."""
        query, params = _select(filters, before, limit)
        try:
            with self._db.use() as conn:
                with conn.cursor(row_factory=dict_row) as cur:
                    rows = cur.execute(query, params).fetchall()
                conn.rollback()  # read only; end the transaction psycopg opened
        except psycopg.Error as error:
            raise classify(error) from error
        return [_row(row) for row in rows]

    def close(self) -> None:
        self._db.close()
        self._keys_db.close()

    # --- seals (auditq/seals): the sealer's and the verifier's reads and the seal write ----

    def seal_horizon(self) -> tuple[int, datetime]:
        with self._read() as conn:
            xmin, now = _one(conn.execute("select * from public.audit_seal_horizon()"))
        return int(xmin), now

    def sealable_rows(
        self, from_txid: int, to_txid: int, after: tuple[int, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Rows with from_txid <= txid < to_txid, in (txid, id) order, after the keyset."""
        # Qualified names: a bare "txid" or "id" in ORDER BY would mean the text columns
        # selected under those names, and put txid 1000 before 999.
        query = (
            f"select {_SEALED} from public.audit_logs l"
            " where l.txid >= %s::xid8 and l.txid < %s::xid8"
        )
        params: list[Any] = [str(from_txid), str(to_txid)]
        if after is not None:
            query += " and (l.txid, l.id) > (%s::xid8, %s::uuid)"
            params += [str(after[0]), after[1]]
        query += " order by l.txid, l.id limit %s"
        params.append(limit)
        with self._read() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def seal_next(
        self, from_txid: int, horizon: int, stored_before: datetime, max_rows: int
    ) -> tuple[int, int, bytes]:
        """The next seal's (to_txid, row count, leaves), computed by the database."""
        with self._read() as conn:
            end, count, leaves = _one(
                conn.execute(
                    "select * from public.audit_seal_next(%s, %s, %s, %s)",
                    [str(from_txid), str(horizon), stored_before, max_rows],
                )
            )
        return int(end), int(count), bytes(leaves)

    def last_seal(self) -> dict[str, Any] | None:
        seals = self._seals("order by seal_no desc limit 1", [], leaves=False)
        return seals[0] if seals else None

    def list_seals(self, after_no: int, limit: int, leaves: bool = True) -> list[dict[str, Any]]:
        tail = "where seal_no > %s order by seal_no limit %s"
        return self._seals(tail, [after_no, limit], leaves)

    def add_seal(self, seal: dict[str, Any]) -> bool:
        """Insert one seal; False when another sealer already took its place in the chain."""
        columns = [c for c in SEAL_COLUMNS if c != "leaves"] + ["leaves"]
        values = [str(seal[c]) if c.endswith("_txid") else seal[c] for c in columns]
        query = sql.SQL("insert into public.audit_seals ({}) values ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(
                sql.SQL("%s::xid8" if c.endswith("_txid") else "%s") for c in columns
            ),
        )
        try:
            with self._db.use() as conn, conn.transaction():
                conn.execute(query, values)
        except psycopg.errors.UniqueViolation:
            return False
        except psycopg.Error as error:
            raise classify(error) from error
        return True

    def unsealed(self, from_txid: int) -> tuple[int, datetime | None]:
        """How many rows no seal covers yet, and when the oldest of them was stored."""
        with self._read() as conn:
            count, oldest = _one(
                conn.execute(
                    "select count(*), min(received_at) from public.audit_logs"
                    " where txid >= %s::xid8",
                    [str(from_txid)],
                )
            )
        return count, oldest

    # --- retention (auditq/retention): what verify needs to know about archived months ---

    def archive_records(self) -> list[dict[str, Any]]:
        with self._read() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select archive_no, seals from public.audit_archives order by archive_no"
            ).fetchall()

    def _seals(self, tail: str, params: list[Any], leaves: bool) -> list[dict[str, Any]]:
        columns = ", ".join(
            f"{c}::text as {c}" if c.endswith("_txid") else c
            for c in SEAL_COLUMNS
            if leaves or c != "leaves"
        )
        with self._read() as conn, conn.cursor(row_factory=dict_row) as cur:
            query = f"select {columns} from public.audit_seals {tail}"
            rows = cur.execute(query, params).fetchall()
        return [seal_record(row) for row in rows]

    # --- personal data keys (auditq/pii) ---------------------------------------------------

    def pii_keys(
        self, *, subjects: Sequence[str] = (), key_ids: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        # Each list goes as one JSON text (orjson, then the server's JSON parser): psycopg
        # dumps a Python list as an array one element at a time, a regex search each, which
        # was most of the worker's cost per data key. array(...) keeps both indexes in use.
        with self._read(self._keys_db) as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select subject, key_id::text as key_id, wrapped from public.audit_pii_keys"
                " where subject = any(array(select jsonb_array_elements_text(%s::jsonb)))"
                " or key_id = any(array(select jsonb_array_elements_text(%s::jsonb)::uuid))",
                [dumps(list(subjects)).decode(), dumps(list(key_ids)).decode()],
            ).fetchall()

    def add_pii_keys(self, rows: Sequence[dict[str, str]]) -> set[str]:
        # One statement for the batch, not a round of its own per key: a backlog with many
        # new subjects creates thousands at once. A binary COPY first, half the insert's
        # time a key (bench/HISTORY.md, issue 15, session 17). Should a writer racing on one
        # of the subjects have added it meanwhile, the COPY fails whole and the insert that
        # skips taken subjects runs instead (its rows as one JSON text, as in pii_keys).
        try:
            with self._keys_db.use() as conn:
                if _copy_pii_keys(conn, rows):
                    return {row["subject"] for row in rows}
                with conn.transaction():
                    added = conn.execute(
                        "insert into public.audit_pii_keys (subject, key_id, wrapped)"
                        " select subject, key_id, wrapped from jsonb_to_recordset(%s::jsonb)"
                        " as r(subject text, key_id uuid, wrapped text)"
                        " on conflict (subject) do nothing returning subject",
                        [dumps(list(rows)).decode()],
                    ).fetchall()
        except psycopg.Error as error:
            raise classify(error) from error
        return {subject for (subject,) in added}

    def delete_pii_key(self, subject: str) -> bool:
        try:
            with self._keys_db.use() as conn, conn.transaction():
                cur = conn.execute(
                    "delete from public.audit_pii_keys where subject = %s", [subject]
                )
                return cur.rowcount > 0
        except psycopg.Error as error:
            raise classify(error) from error

    def pii_key_page(self, after: str | None, limit: int) -> list[dict[str, str]]:
        with self._read(self._keys_db) as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select subject, key_id::text as key_id, wrapped from public.audit_pii_keys"
                " where %s::text is null or subject > %s order by subject limit %s",
                [after, after, limit],
            ).fetchall()

    def rewrap_pii_key(self, key_id: str, wrapped: str) -> None:
        try:
            with self._keys_db.use() as conn, conn.transaction():
                conn.execute(
                    "update public.audit_pii_keys set wrapped = %s where key_id = %s",
                    [wrapped, key_id],
                )
        except psycopg.Error as error:
            raise classify(error) from error

    @contextmanager
    def _read(self, db: SharedConnection | None = None) -> Iterator[psycopg.Connection]:
        try:
            with (db or self._db).use() as conn:
                try:
                    yield conn
                finally:
                    conn.rollback()  # read only; end the transaction psycopg opened
        except psycopg.Error as error:
            raise classify(error) from error


def _one(cursor: psycopg.Cursor) -> tuple[Any, ...]:
    """The one row an aggregate or a function call returns."""
    row = cursor.fetchone()
    assert row is not None
    return row


def _copy(cur: psycopg.Cursor, table: str, rows: Sequence[Row]) -> None:
    """COPY the rows as they are: each value goes in its column's binary form, metadata
    (a dict) and pii (JSON text) through the jsonb dumper (auditq/stores/copy.py)."""
    with binary_copy(cur, table, ROW_COLUMNS, COPY_TYPES) as copy:
        for row in rows:
            copy.write_row(row)


def _select(
    filters: EventFilters, before: Cursor | None, limit: int
) -> tuple[sql.Composed, list[Any]]:
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in filters.equals().items():
        conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
        params.append(value)
    if filters.since is not None:
        conditions.append(sql.SQL("occurred_at >= %s"))
        params.append(filters.since)
    if filters.until is not None:
        conditions.append(sql.SQL("occurred_at < %s"))
        params.append(filters.until)
    if before is not None:
        # A row comparison walks the (occurred_at desc, id desc) index from the cursor.
        conditions.append(sql.SQL("(occurred_at, id) < (%s, %s)"))
        params.extend(before)
    where = sql.SQL(" where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL("")
    query = sql.SQL(
        "select {columns} from public.audit_logs{where} order by occurred_at desc, id desc limit %s"
    ).format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in QUERY_COLUMNS),
        where=where,
    )
    params.append(max(1, min(int(limit), MAX_QUERY_LIMIT)))
    return query, params


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["id"] = str(row["id"])
    out["ip"] = str(row["ip"]) if row["ip"] is not None else None
    for name in ("occurred_at", "received_at"):
        out[name] = row[name].astimezone(UTC)
    return out


def _copy_pii_keys(conn: psycopg.Connection, rows: Sequence[dict[str, str]]) -> bool:
    """COPY the key rows in; False, and nothing added, when a subject is taken already."""
    columns, types = ["subject", "key_id", "wrapped"], ["text", "uuid", "text"]
    try:
        with (
            conn.transaction(),
            conn.cursor() as cur,
            binary_copy(cur, "public.audit_pii_keys", columns, types) as copy,
        ):
            for row in rows:
                copy.write_row((row["subject"], UUID(row["key_id"]), row["wrapped"]))
    except psycopg.errors.UniqueViolation:
        return False
    return True
