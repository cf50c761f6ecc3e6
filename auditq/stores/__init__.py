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
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from auditq.config import Settings
from auditq.events import AuditEvent, Row

IngestPath = Literal["queue", "direct"]


class StoreError(Exception):
    """A store operation failed; the message is safe to log (no secrets, no row data)."""


class DataRejected(StoreError):
    """The database refused the rows for their content (SQLSTATE class 22/23, HTTP 400)."""


class StoreUnavailable(StoreError):
    """Timeouts, connection loss, 5xx, 429, permissions: retrying the same rows may work."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """An insert's request made ahead of it (``Store.encode_rows``): the worker encodes the
    next batch on its prefetch thread while the store is busy with the current one."""

    count: int  # the rows it holds
    body: bytes


class Store(Protocol):
    name: str

    def insert_rows(self, rows: Sequence[Row]) -> int:
        """Insert idempotently on ``id``; return how many rows were new."""

    def insert_events(self, events: Sequence[AuditEvent], ingest_path: IngestPath = "queue") -> int:
        """``insert_rows`` of the events' rows (``events.event_row``)."""

    def encode_rows(self, rows: Sequence[Row]) -> Encoded | None:
        """The insert of ``rows`` made ahead, for ``insert_encoded``; None where the store
        cannot make it (the worker then inserts the rows with ``insert_rows``)."""

    def insert_encoded(self, encoded: Encoded) -> int:
        """``insert_rows`` of the rows ``encoded`` was made from."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    def close(self) -> None: ...

    def query_events(
        self, filters: EventFilters, before: Cursor | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Rows matching ``filters``, newest first (occurred_at desc, id desc), at most
        ``limit`` (capped at MAX_QUERY_LIMIT), strictly after ``before`` in that order.

        Each row has QUERY_COLUMNS as keys: ``id`` a str, the times aware datetimes (UTC),
        ``ip`` a str or None, ``metadata`` a dict. Filter values are always sent as
        parameters/quoted values, never as query text.
        """
        ...

    # --- seals (auditq/seals) ------------------------------------------------------------

    def seal_horizon(self) -> tuple[int, datetime]:
        """(txid horizon, database time): every row with a txid below the horizon is final."""
        ...

    def sealable_rows(
        self, from_txid: int, to_txid: int, after: tuple[int, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Rows with from_txid <= txid < to_txid in (txid, id) order, strictly after the
        ``after`` keyset, at most ``limit``; SEALED_COLUMNS as keys, values as read
        (``metadata`` as its jsonb text, ``ip`` as inet's output text)."""
        ...

    def seal_next(
        self, from_txid: int, horizon: int, stored_before: datetime, max_rows: int
    ) -> tuple[int, int, bytes]:
        """The next seal's (to_txid, row count, leaves) from ``from_txid``, computed by the
        database (``public.audit_seal_next``, which documents where a seal ends)."""
        ...

    def last_seal(self) -> dict[str, Any] | None:
        """The newest seal without its leaves (auditq.stores.seals describes the record)."""
        ...

    def list_seals(self, after_no: int, limit: int, leaves: bool = True) -> list[dict[str, Any]]:
        """Seals numbered above ``after_no``, in order, at most ``limit``."""
        ...

    def add_seal(self, seal: dict[str, Any]) -> bool:
        """Insert one seal; False when its number or previous hash is already taken."""
        ...

    def unsealed(self, from_txid: int) -> tuple[int, datetime | None]:
        """Rows with txid >= from_txid (no seal covers them): count and oldest received_at."""
        ...

    # --- retention (auditq/retention) ---

    def archive_records(self) -> list[dict[str, Any]]:
        """``public.audit_archives`` in order: each ``archive_no`` and its ``seals`` state."""

    # --- personal data keys (auditq/pii) ---------------------------------------------------

    def pii_keys(
        self, *, subjects: Sequence[str] = (), key_ids: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        """Rows of ``audit_pii_keys`` (``subject``, ``key_id`` as text, ``wrapped``) whose
        subject is in ``subjects`` or whose key id is in ``key_ids``."""
        ...

    def add_pii_keys(self, rows: Sequence[dict[str, str]]) -> set[str]:
        """Insert data keys, skipping a subject that has one already (another writer's
        stays); the subjects this call inserted a key for (callers read the others back)."""
        ...

    def delete_pii_key(self, subject: str) -> bool:
        """Destroy a subject's data key (erasure); False when it had none."""
        ...

    def pii_key_page(self, after: str | None, limit: int) -> list[dict[str, str]]:
        """Data key rows in subject order, strictly after ``after``, at most ``limit``."""
        ...

    def rewrap_pii_key(self, key_id: str, wrapped: str) -> None:
        """Replace a data key's wrapping (a rotation of AUDITQ_PII_KEY); the key stays."""
        ...


# --- the explorer's read path (used by the dashboard) ------------------------------------

# Columns the explorer reads, in display and export order.
QUERY_COLUMNS = (
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
    "pii",  # ciphertext of the personal fields (auditq/pii); readers replace it (reveal)
)
MAX_QUERY_LIMIT = 1000

# A keyset position: the (occurred_at, id) of the last row already seen.
Cursor = tuple[datetime, UUID]


@dataclass(frozen=True)
class EventFilters:
    """What the explorer filters on. Unset (None or "") fields do not filter.

    ``since`` is inclusive and ``until`` exclusive; the rest are exact matches on the column
    of the same name.
    """

    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    actor_type: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    tenant_id: str | None = None
    category: str | None = None
    outcome: str | None = None

    def equals(self) -> dict[str, str]:
        """Column -> value for the exact-match filters that are set."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("since", "until") and getattr(self, f.name) not in (None, "")
        }


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
