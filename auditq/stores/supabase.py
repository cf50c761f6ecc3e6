"""The ``supabase`` store: supabase-py's admin client (service role) through PostgREST.

A bulk upsert on ``id`` with ``resolution=ignore-duplicates`` is ``INSERT ... ON CONFLICT
DO NOTHING``; ``return=minimal`` skips sending the rows back, and ``count=exact`` still
reports how many were new. ``missing=default`` lets ``received_at`` take the database time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import httpx
from postgrest import APIError, CountMethod, ReturnMethod
from supabase import Client, ClientOptions, create_client

from auditq.events import AuditEvent, to_row
from auditq.stores import DataRejected, IngestPath, StoreUnavailable

TABLE = "audit_logs"
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
            httpx_client=self._http, auto_refresh_token=False, persist_session=False
        )
        self.client: Client = create_client(url, service_role_key, options=options)

    def insert_events(self, events: Sequence[AuditEvent], ingest_path: IngestPath = "queue") -> int:
        if not events:
            return 0
        rows = [to_row(event, ingest_path) for event in events]
        query = self.client.table(TABLE).upsert(
            rows,
            on_conflict="id",
            ignore_duplicates=True,
            returning=ReturnMethod.minimal,
            count=CountMethod.exact,
            default_to_null=False,
        )
        response = _run(query)
        return response.count or 0

    def ping(self) -> None:
        _run(self.client.table(TABLE).select("id").limit(1))

    def close(self) -> None:
        self._http.close()


def _run(query):
    try:
        return query.execute()
    except APIError as error:
        raise classify(error) from None
    except httpx.HTTPError as error:
        # Timeouts, refused connections, resets: the request never got an answer.
        raise StoreUnavailable(f"postgrest unreachable: {type(error).__name__}") from None
