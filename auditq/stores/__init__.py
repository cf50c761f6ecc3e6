"""Where audit events land. One protocol, two implementations, one contract test suite.

- ``supabase``: supabase-py's admin client through PostgREST (what most Supabase apps have).
- ``postgres``: psycopg 3 on a direct connection, COPY then INSERT (the high-volume path,
  and the store of the embedded default).

Errors come out as one of two kinds, because the worker acts differently on each:
``DataRejected`` (the rows themselves are bad: isolate and dead-letter them) and
``StoreUnavailable`` (anything else: keep the rows, back off, retry).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from auditq.config import Settings
from auditq.events import AuditEvent

IngestPath = Literal["queue", "direct"]


class StoreError(Exception):
    """A store operation failed; the message is safe to log (no secrets, no row data)."""


class DataRejected(StoreError):
    """The database refused the rows for their content (SQLSTATE class 22/23, HTTP 400)."""


class StoreUnavailable(StoreError):
    """Timeouts, connection loss, 5xx, 429, permissions: retrying the same rows may work."""


class Store(Protocol):
    name: str

    def insert_events(self, events: Sequence[AuditEvent], ingest_path: IngestPath = "queue") -> int:
        """Insert idempotently on ``id``; return how many rows were new."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    def close(self) -> None: ...


def open_store(settings: Settings, timeout: float | None = None) -> Store | None:
    """The store the settings name, or None when none is configured."""
    timeout = timeout if timeout is not None else settings.direct_timeout
    if settings.store_kind == "supabase":
        from auditq.stores.supabase import SupabaseStore

        assert settings.supabase_url and settings.supabase_service_role_key
        key = settings.supabase_service_role_key.get_secret_value()
        return SupabaseStore(settings.supabase_url, key, timeout=timeout)
    if settings.store_kind == "postgres":
        from auditq.stores.postgres import PostgresStore

        assert settings.database_url
        return PostgresStore(settings.database_url.get_secret_value(), timeout=timeout)
    return None
