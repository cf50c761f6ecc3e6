"""Seal test helpers: sample events, and a superuser session that gets past the guards."""

from __future__ import annotations

import psycopg

from auditq.events import build_event


def events(n: int, start: int = 0, **extra):
    return [
        build_event(
            {
                "action": "user.role_change",
                "actor_id": f"u_{i}",
                "ip": "2001:db8::7" if i % 2 else "192.0.2.7",
                "metadata": {"i": i, "name": "Zoë", "nested": {"b": [1, 2.5], "a": None}},
                **extra,
            }
        )
        for i in range(start, start + n)
    ]


def superuser(dsn: str) -> psycopg.Connection:
    """A superuser session with ordinary triggers off: what an attacker with the database
    password does to get past the append-only guard."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SET session_replication_role = replica")
    return conn
