"""The ``postgres`` store: psycopg 3 on DATABASE_URL, COPY into a temp table, then insert.

COPY is the fastest way into Postgres, but COPY cannot skip duplicates; copying into a
session temp table first and then ``INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING``
keeps COPY's speed and makes a redelivered batch harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb

from auditq.events import ROW_COLUMNS, AuditEvent
from auditq.stores import DataRejected, IngestPath, StoreUnavailable

_COLUMNS = ", ".join(ROW_COLUMNS)
_STAGING = "auditq_incoming"
_METADATA = list(AuditEvent.model_fields).index("metadata")


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


class PostgresStore:
    name = "postgres"

    def __init__(self, dsn: str, timeout: float = 10.0):
        self._dsn = dsn
        self._timeout = timeout
        self._conn: psycopg.Connection | None = None
        # One connection per store; callers on several threads take turns.
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn,
                connect_timeout=max(1, round(self._timeout)),
                options=f"-c statement_timeout={int(self._timeout * 1000)}",
                application_name="auditq",
            )
            self._conn.execute(
                f"create temp table if not exists {_STAGING}"
                " (like public.audit_logs including defaults) on commit delete rows"
            )
            self._conn.commit()
        return self._conn

    def insert_events(self, events: Sequence[AuditEvent], ingest_path: IngestPath = "queue") -> int:
        if not events:
            return 0
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy(f"copy {_STAGING} ({_COLUMNS}) from stdin") as copy:
                        for event in events:
                            copy.write_row(_values(event, ingest_path))
                    cur.execute(
                        f"insert into public.audit_logs ({_COLUMNS})"
                        f" select {_COLUMNS} from {_STAGING} on conflict (id) do nothing"
                    )
                    return cur.rowcount
            except psycopg.Error as error:
                self._discard_if_broken()
                raise classify(error) from error

    def ping(self) -> None:
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("select 1").fetchone()
                conn.rollback()
            except psycopg.Error as error:
                self._discard_if_broken()
                raise StoreUnavailable(f"postgres: {_first_line(error)}") from error

    def _discard_if_broken(self) -> None:
        if self._conn is not None and self._conn.broken:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _values(event: AuditEvent, ingest_path: IngestPath) -> tuple:
    # psycopg adapts uuid, datetime and ipaddress itself; only the JSON object needs a wrapper.
    values = [getattr(event, name) for name in AuditEvent.model_fields]
    values[_METADATA] = Jsonb(event.metadata)
    return (*values, ingest_path)
