"""Fixtures for the seal tests: both stores on the session Postgres/PostgREST, a key pair."""

from __future__ import annotations

import psycopg
import pytest

from auditq.config import Settings
from auditq.events import build_event
from auditq.seals import signing
from tests.auditq.stores.test_contract import store  # noqa: F401 (the same two stores)


@pytest.fixture(scope="session")
def key_pair() -> signing.KeyPair:
    return signing.generate()


@pytest.fixture
def signer(key_pair) -> signing.Signer:
    return signing.signer(Settings(seal_key=key_pair.private))


@pytest.fixture
def checker(key_pair) -> signing.Checker:
    return signing.checker(Settings(seal_public_key=key_pair.public))


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
