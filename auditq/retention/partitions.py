"""The partition job's one call: ``public.audit_partitions_maintain`` (see the migration
``*_partitions.sql``) creates the months ahead and moves rows out of the default partition.

It goes through DATABASE_URL when set (psycopg), else through PostgREST's rpc with the
service key: the function is SECURITY DEFINER, so a worker with only SUPABASE_URL keeps the
partitions ahead too.
"""

from __future__ import annotations

import httpx
import psycopg

from auditq.config import Settings
from auditq.stores import StoreUnavailable

# Partitions exist for the current month and this many after it.
MONTHS_AHEAD = 2


def maintain(settings: Settings, timeout: float = 60.0) -> dict[str, int]:
    """Run the maintenance once; the rows moved per month (``YYYY-MM``), usually none."""
    if settings.database_url:
        try:
            with psycopg.connect(
                settings.database_url.get_secret_value(), connect_timeout=int(timeout)
            ) as conn:
                rows = conn.execute(
                    "select month, moved from public.audit_partitions_maintain(%s)",
                    (MONTHS_AHEAD,),
                ).fetchall()
        except psycopg.Error as error:
            raise StoreUnavailable(f"partition maintenance failed: {error}") from None
        return {month: moved for month, moved in rows}
    if settings.supabase_url and settings.supabase_service_role_key:
        key = settings.supabase_service_role_key.get_secret_value()
        try:
            response = httpx.post(
                f"{settings.supabase_url.rstrip('/')}/rest/v1/rpc/audit_partitions_maintain",
                json={"p_ahead": MONTHS_AHEAD},
                headers={"apikey": key, "Authorization": f"Bearer {key}"},
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"postgrest unreachable: {type(error).__name__}") from None
        if not response.is_success:
            raise StoreUnavailable(f"partition maintenance failed: HTTP {response.status_code}")
        return {row["month"]: row["moved"] for row in response.json()}
    raise StoreUnavailable("no store configured (set DATABASE_URL or SUPABASE_URL)")
