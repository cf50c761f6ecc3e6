"""Fixtures for the retention tests (the seal key pair is shared with tests/auditq/seals)."""

from __future__ import annotations

import psycopg
import pytest

from tests.auditq.seals.conftest import checker, key_pair, signer  # noqa: F401


@pytest.fixture
def clean_db(clean_db):
    """clean_db, and after the test only the partitions a fresh install has (TRUNCATE keeps
    the month partitions a test created, which would change what the next one sees)."""
    yield clean_db
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        stale = conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'public.audit_logs'::regclass"
            " and c.relname <> 'audit_logs_default'"
            " and c.relname not in (select 'audit_logs_' || to_char(now() + make_interval("
            'months => k), \'"y"YYYY"m"MM\') from generate_series(0, 2) k)'
        ).fetchall()
        for (name,) in stale:
            conn.execute(f"drop table public.{name}")
        conn.execute("truncate public.audit_logs")
