"""The RQ baseline's job: one event, one insert (what "just use a job queue" gives)."""

from __future__ import annotations

import os

import psycopg

_conn: psycopg.Connection | None = None


def insert_event(row: dict) -> None:
    global _conn
    if _conn is None:
        _conn = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)
    _conn.execute(
        "insert into public.audit_logs (id, occurred_at, action, actor_id, metadata)"
        " values (%(id)s, %(occurred_at)s, %(action)s, %(actor_id)s, %(metadata)s::jsonb)"
        " on conflict (id, occurred_at) do nothing",
        row,
    )
