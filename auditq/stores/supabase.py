"""The ``supabase`` store: supabase-py's admin client (service role) through PostgREST.

A bulk upsert on ``id`` with ``resolution=ignore-duplicates`` is ``INSERT ... ON CONFLICT
DO NOTHING``; ``return=minimal`` skips sending the rows back, and ``count=exact`` still
reports how many were new. ``columns=`` names the event's columns, so ``received_at`` (not
one of them) takes the database time; ``missing=default`` is not needed (every row has every
named key) and would cost PostgREST and Postgres about a third more CPU per row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import orjson
from postgrest import APIError, CountMethod, ReturnMethod
from postgrest.exceptions import APIErrorFromJSON, generate_default_error_message
from pydantic import ValidationError
from supabase import Client, ClientOptions, create_client

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
from auditq.stores.encoding import dumps
from auditq.stores.seals import SEAL_COLUMNS, from_bytea, seal_record, to_bytea

TABLE = "audit_logs"
SEALS = "audit_seals"
PII_KEYS = "audit_pii_keys"
# The jsonb columns as their text, as the canonical form hashes them.
_SEALED = ",".join(f"{c}::text" if c in ("metadata", "pii") else c for c in SEALED_COLUMNS)
_DATA_CODE = re.compile(r"^(22|23)[0-9A-Z]{3}$|^400$")


def classify(error: APIError) -> DataRejected | StoreUnavailable:
    """SQLSTATE class 22/23, or a bare HTTP 400, is the rows' fault; the rest is retried.

    PostgREST reports the SQLSTATE as ``code``; a gateway error page (502 while PostgREST
    is down) has no JSON body, and postgrest-py then puts the HTTP status there instead.
    """
    code = str(error.code or "")
    text = f"postgrest {code or 'error'}: {error.message or 'request failed'}"
    if _DATA_CODE.match(code):
        return DataRejected(text)
    return StoreUnavailable(text)


class SupabaseStore:
    name = "supabase"

    def __init__(self, url: str, service_role_key: str, timeout: float = 10.0):
        # The timeout lives on our own httpx client (supabase-py deprecates its timeout option).
        self._http = httpx.Client(timeout=timeout)
        options = ClientOptions(
            httpx_client=self._http,
            postgrest_client_retry=False,  # the worker retries with its own backoff
            auto_refresh_token=False,
            persist_session=False,
        )
        self.client: Client = create_client(url, service_role_key, options=options)

    def insert_events(self, events: Sequence[AuditEvent], ingest_path: IngestPath = "queue") -> int:
        return self.insert_rows([event_row(event, ingest_path) for event in events])

    def insert_rows(self, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        return self.insert_encoded(self.encode_rows(rows))

    def encode_rows(self, rows: Sequence[Row]) -> Encoded:
        """The bulk upsert's body, by orjson: the query builder would turn every row into a
        dict of JSON-ready values and encode it with the stdlib; orjson writes the rows'
        own values (UUID, aware datetime) in one pass."""
        objects = [dict(zip(ROW_COLUMNS, row, strict=True)) for row in rows]
        for obj in objects:
            # The ciphertext's JSON text (auditq/pii/writer.py) as the JSON value it stands
            # for, so PostgREST stores the same jsonb as COPY does, not a string.
            if obj["pii"] is not None:
                obj["pii"] = orjson.loads(obj["pii"])
        return Encoded(len(objects), dumps(objects))

    def insert_encoded(self, encoded: Encoded) -> int:
        """One bulk upsert sent on the admin client's session. The request is the one the
        query builder makes: same URL, the client's service-role headers,
        ``on_conflict=id,occurred_at``, the same Prefer, and ``columns=``."""
        postgrest = self.client.postgrest
        try:
            response = self._http.post(
                f"{postgrest.base_url}/{TABLE}",
                params=_UPSERT_PARAMS,
                content=encoded.body,
                headers={**postgrest.headers, **_UPSERT_HEADERS},
            )
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"postgrest unreachable: {type(error).__name__}") from None
        if not response.is_success:
            # The builder's own error reading (PostgREST's JSON, or the status of a
            # gateway page), so both paths classify alike.
            try:
                detail = dict(APIErrorFromJSON.model_validate_json(response.content))
            except ValidationError:
                detail = generate_default_error_message(response)
            raise classify(APIError(detail))
        # count=exact: Content-Range is "*/<rows inserted>".
        inserted = response.headers.get("content-range", "").rpartition("/")[2]
        return int(inserted) if inserted.isdigit() else 0

    def ping(self) -> None:
        _run(self.client.table(TABLE).select("id").limit(1))

    def close(self) -> None:
        self._http.close()

    def query_events(
        self, filters: EventFilters, before: Cursor | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The explorer's read through the query builder.

        Exact-match values go out as ``col=eq.<value>`` query parameters: PostgREST reads
        everything after ``eq.`` as the value, and httpx percent-encodes it, so commas,
        parentheses, dots and quotes in a value cannot change the filter. The keyset
        condition is the only logic tree (``or=(...)``); its values are a timestamp and a
        UUID this code formats itself, double-quoted as PostgREST's grammar requires.
        """
        query = self.client.table(TABLE).select(",".join(QUERY_COLUMNS))
        for column, value in filters.equals().items():
            query = query.eq(column, str(value))
        if filters.since is not None:
            query = query.gte("occurred_at", _timestamp(filters.since))
        if filters.until is not None:
            query = query.lt("occurred_at", _timestamp(filters.until))
        if before is not None:
            at, last_id = _timestamp(before[0]), str(before[1])
            query = query.or_(f'occurred_at.lt."{at}",and(occurred_at.eq."{at}",id.lt."{last_id}")')
        query = (
            query.order("occurred_at", desc=True)
            .order("id", desc=True)
            .limit(max(1, min(int(limit), MAX_QUERY_LIMIT)))
        )
        return [_row(row) for row in _run(query).data]

    # --- seals (auditq/seals): the sealer's and the verifier's reads and the seal write ----

    def seal_horizon(self) -> tuple[int, datetime]:
        (row,) = _run(self.client.rpc("audit_seal_horizon")).data
        return int(row["xmin"]), datetime.fromisoformat(row["db_now"])

    def sealable_rows(
        self, from_txid: int, to_txid: int, after: tuple[int, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Rows with from_txid <= txid < to_txid, in (txid, id) order, after the keyset.

        The bounds are ints and a UUID this code formats, so the logic tree is safe text."""
        query = (
            self.client.table(TABLE)
            .select(_SEALED)
            .gte("txid", str(from_txid))
            .lt("txid", str(to_txid))
        )
        if after is not None:
            txid, last_id = int(after[0]), str(UUID(str(after[1])))
            query = query.or_(f"txid.gt.{txid},and(txid.eq.{txid},id.gt.{last_id})")
        query = query.order("txid").order("id").limit(limit)
        return _run(query).data

    def seal_next(
        self, from_txid: int, horizon: int, stored_before: datetime, max_rows: int
    ) -> tuple[int, int, bytes]:
        """The next seal's (to_txid, row count, leaves), computed by the database."""
        params = {
            "from_txid": str(from_txid),
            "horizon": str(horizon),
            "stored_before": _timestamp(stored_before),
            "max_rows": max_rows,
        }
        (row,) = _run(self.client.rpc("audit_seal_next", params)).data
        return int(row["to_txid"]), int(row["row_count"]), from_bytea(row["leaves"])

    def last_seal(self) -> dict[str, Any] | None:
        columns = ",".join(c for c in SEAL_COLUMNS if c != "leaves")
        query = self.client.table(SEALS).select(columns).order("seal_no", desc=True).limit(1)
        return next((seal_record(row) for row in _run(query).data), None)

    def list_seals(self, after_no: int, limit: int, leaves: bool = True) -> list[dict[str, Any]]:
        columns = ",".join(c for c in SEAL_COLUMNS if leaves or c != "leaves")
        query = (
            self.client.table(SEALS)
            .select(columns)
            .gt("seal_no", after_no)
            .order("seal_no")
            .limit(limit)
        )
        return [seal_record(row) for row in _run(query).data]

    def add_seal(self, seal: dict[str, Any]) -> bool:
        """Insert one seal; False when another sealer already took its place in the chain."""
        row = {
            c: to_bytea(v) if isinstance(v, bytes) else _seal_value(v)
            for c, v in seal.items()
            if c in SEAL_COLUMNS
        }
        try:
            _run(self.client.table(SEALS).insert(row, returning=ReturnMethod.minimal))
        except DataRejected as error:
            if str(error).startswith("postgrest 23505"):
                return False
            raise
        return True

    def unsealed(self, from_txid: int) -> tuple[int, datetime | None]:
        """How many rows no seal covers yet, and when the oldest of them was stored."""
        query = (
            self.client.table(TABLE)
            .select("received_at", count=CountMethod.exact)
            .gte("txid", str(from_txid))
            .order("received_at")
            .limit(1)
        )
        response = _run(query)
        oldest = response.data[0]["received_at"] if response.data else None
        return response.count or 0, datetime.fromisoformat(oldest) if oldest else None

    # --- retention (auditq/retention): what verify needs to know about archived months ---

    def archive_records(self) -> list[dict[str, Any]]:
        query = self.client.table("audit_archives").select("archive_no,seals").order("archive_no")
        return list(_run(query).data)

    # --- personal data keys (auditq/pii) ---------------------------------------------------

    def pii_keys(
        self, *, subjects: Sequence[str] = (), key_ids: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        """``in.(...)`` lists: postgrest-py double-quotes each value holding a reserved
        character, so a subject cannot change the filter; asked in slices of 100 so the URL
        stays short."""
        rows: list[dict[str, str]] = []
        for column, values in (("subject", list(subjects)), ("key_id", list(key_ids))):
            for start in range(0, len(values), 100):
                query = (
                    self.client.table(PII_KEYS)
                    .select("subject,key_id,wrapped")
                    .in_(column, values[start : start + 100])
                )
                rows += _run(query).data
        return rows

    def add_pii_keys(self, rows: Sequence[dict[str, str]]) -> set[str]:
        if not rows:
            return set()
        # ignore-duplicates is ON CONFLICT DO NOTHING: only the rows inserted come back.
        query = self.client.table(PII_KEYS).upsert(
            list(rows),
            on_conflict="subject",
            ignore_duplicates=True,
            returning=ReturnMethod.representation,
        )
        return {row["subject"] for row in _run(query).data}

    def delete_pii_key(self, subject: str) -> bool:
        query = self.client.table(PII_KEYS).delete(count=CountMethod.exact).eq("subject", subject)
        return bool(_run(query).count)

    def pii_key_page(self, after: str | None, limit: int) -> list[dict[str, str]]:
        query = self.client.table(PII_KEYS).select("subject,key_id,wrapped")
        if after is not None:
            query = query.gt("subject", after)
        return _run(query.order("subject").limit(limit)).data

    def rewrap_pii_key(self, key_id: str, wrapped: str) -> None:
        update = {"wrapped": wrapped}
        _run(
            self.client.table(PII_KEYS)
            .update(update, returning=ReturnMethod.minimal)
            .eq("key_id", key_id)
        )


def _seal_value(value: Any) -> Any:
    return _timestamp(value) if isinstance(value, datetime) else value


# audit_logs' unique key holds its partition key (monthly partitions on occurred_at).
_UPSERT_PARAMS = {"on_conflict": "id,occurred_at", "columns": ",".join(ROW_COLUMNS)}
_UPSERT_HEADERS = {
    "Content-Type": "application/json",
    "Prefer": "return=minimal,count=exact,resolution=ignore-duplicates",
}


def _run(query):
    try:
        return query.execute()
    except APIError as error:
        raise classify(error) from None
    except httpx.HTTPError as error:
        # Timeouts, refused connections, resets: the request never got an answer.
        raise StoreUnavailable(f"postgrest unreachable: {type(error).__name__}") from None


def _timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z`` (no ``+`` to survive a query string)."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    # isoformat, not strftime: %Y gives "1", not "0001", for the year 1 on glibc.
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = {column: row.get(column) for column in QUERY_COLUMNS}
    for name in ("occurred_at", "received_at"):
        out[name] = datetime.fromisoformat(row[name]).astimezone(UTC)
    if out["metadata"] is None:
        out["metadata"] = {}
    return out
