"""Everything Redis and the database hold, as text: what a test searches for a value that must
not be stored anywhere (secrets, personal data in clear)."""

from __future__ import annotations

import psycopg


def dump_redis(client) -> str:
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"stream":
            parts += [repr(fields) for _, fields in client.xrange(key)]
        elif kind == b"hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == b"string":
            parts.append(repr(client.get(key)))
    return "\n".join(parts)


def dump_database(dsn: str) -> str:
    """Every row of every table in the public schema, as text (a superuser's view)."""
    with psycopg.connect(dsn) as conn:
        tables = [
            row[0]
            for row in conn.execute("select tablename from pg_tables where schemaname = 'public'")
        ]
        return "\n".join(
            str(row)
            for table in tables
            for row in conn.execute(f'select t::text from public."{table}" t')  # noqa: S608
        )
