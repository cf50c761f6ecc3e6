"""Plain helpers of the producer tests (fixtures are in conftest.py)."""

import psycopg

from auditq.config import load_settings


def supabase_settings(postgrest, redis_url, **overrides):
    return load_settings(
        redis_url=redis_url,
        supabase_url=postgrest.url,
        supabase_service_role_key=postgrest.service_key,
        **overrides,
    )


def rows_with(pg_dsn, ids):
    with psycopg.connect(pg_dsn) as conn:
        return conn.execute(
            "select id::text, ingest_path from public.audit_logs where id = any(%s::uuid[])",
            (list(ids),),
        ).fetchall()


def nested(depth: int) -> dict:
    """Metadata ``depth`` levels deep, itself included."""
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value
