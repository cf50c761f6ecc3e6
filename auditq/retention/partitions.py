"""The partition functions of the migration ``*_partitions.sql`` as Python calls:
``audit_partitions_maintain`` (the partition job: months ahead, rows out of the default
partition) and ``audit_partitions_overview`` (the dashboard's list); and the partitions by
name, read over a direct connection (retention's, the tests' and the benchmarks').

They go through DATABASE_URL when set (psycopg), else through PostgREST's rpc with the
service key: the functions are SECURITY DEFINER, so a worker with only SUPABASE_URL keeps the
partitions ahead too, and the dashboard lists them either way.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from auditq.config import Settings
from auditq.stores import StoreUnavailable

# Partitions exist for the current month and this many after it.
MONTHS_AHEAD = 2
# A month's partition is audit_logs_yYYYYmMM (the migration names them so); the others,
# audit_logs_default, hold what falls in no month's.
_MONTH_PARTITION = re.compile(r"audit_logs_y([0-9]{4})m([0-9]{2})")


def partition_name(month: str) -> str:
    """The partition of a month (``YYYY-MM``)."""
    return "audit_logs_y" + month.replace("-", "m")


def month_of(name: str) -> str | None:
    """The month (``YYYY-MM``) a partition holds, None for the default partition."""
    found = _MONTH_PARTITION.fullmatch(name)
    return f"{found[1]}-{found[2]}" if found else None


def names(conn: psycopg.Connection) -> list[str]:
    """Every partition of audit_logs (the months' and the default), by name."""
    rows = conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'public.audit_logs'::regclass order by 1"
    )
    return [name for (name,) in rows]


def maintain(settings: Settings, timeout: float = 60.0) -> dict[str, int]:
    """Run the maintenance once; the rows moved per month (``YYYY-MM``), usually none."""
    rows = call(settings, "audit_partitions_maintain", {"p_ahead": MONTHS_AHEAD}, timeout)
    return {row["month"]: row["moved"] for row in rows}


def overview(settings: Settings, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every partition: ``name``, ``month`` (None for the default), ``row_count``, ``bytes``."""
    return call(settings, "audit_partitions_overview", {}, timeout)


def call(
    settings: Settings, function: str, args: dict[str, Any], timeout: float
) -> list[dict[str, Any]]:
    """``select * from public.<function>(args)`` through DATABASE_URL, else PostgREST's rpc."""
    if settings.database_url:
        named = ", ".join(f"{name} => %({name})s" for name in args)
        try:
            with (
                psycopg.connect(
                    settings.database_url.get_secret_value(), connect_timeout=int(timeout)
                ) as conn,
                conn.cursor(row_factory=dict_row) as cur,
            ):
                return cur.execute(f"select * from public.{function}({named})", args).fetchall()
        except psycopg.Error as error:
            raise StoreUnavailable(f"{function} failed: {str(error).splitlines()[0]}") from None
    if settings.supabase_url and settings.supabase_service_role_key:
        key = settings.supabase_service_role_key.get_secret_value()
        try:
            response = httpx.post(
                f"{settings.supabase_url.rstrip('/')}/rest/v1/rpc/{function}",
                json=args,
                headers={"apikey": key, "Authorization": f"Bearer {key}"},
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"postgrest unreachable: {type(error).__name__}") from None
        if not response.is_success:
            raise StoreUnavailable(f"{function} failed: HTTP {response.status_code}")
        return response.json()
    raise StoreUnavailable("no store configured (set DATABASE_URL or SUPABASE_URL)")
