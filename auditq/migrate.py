"""Apply ``supabase/migrations/*.sql`` to a Postgres database, each file once.

Applied versions are recorded in ``supabase_migrations.schema_migrations``, the table the
Supabase CLI keeps, so ``supabase db push`` and ``python -m auditq migrate`` agree on what
is applied and either can be used. An advisory lock lets two releases run at once safely.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "supabase" / "migrations"
_LOCK_KEY = 0x61756469_7471  # "auditq": any constant shared by every migrating process

log = logging.getLogger(__name__)


def pending(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Path]:
    applied = {
        row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")
    }
    return [path for path in sorted(directory.glob("*.sql")) if _version(path) not in applied]


def _version(path: Path) -> str:
    return path.name.split("_", 1)[0]


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending, each file in its own transaction; return the files applied."""
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("create schema if not exists supabase_migrations")
            conn.execute(
                "create table if not exists supabase_migrations.schema_migrations "
                "(version text primary key, statements text[], name text)"
            )
            for path in pending(conn, directory):
                sql = path.read_text()
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "insert into supabase_migrations.schema_migrations"
                        " (version, statements, name) values (%s, %s, %s)",
                        (_version(path), [sql], path.stem.split("_", 1)[1]),
                    )
                log.info("applied migration %s", path.name)
                applied.append(path.name)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
