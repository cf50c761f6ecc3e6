"""Session-wide real servers (Redis, Postgres, PostgREST behind a Supabase-like gateway).

Each starts once per session, in a temporary directory, on a free port, and stops at the
end. Per-test fixtures reset the data instead. A missing binary or package is an error,
never a skip: a test that did not run must not look like one that passed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import redis

from auditq.devtools.embedded import (
    DEV_AUTHENTICATOR_PASSWORD,
    PostgresServer,
    RedisCluster,
    RedisServer,
    create_supabase_roles,
)
from auditq.migrate import apply_migrations
from auditq.retention import partitions
from tests.services import LocalSupabase

# Emptied before each test that asks for clean_db; add new tables here.
TABLES_TO_CLEAN = (
    "public.audit_logs",
    "public.audit_seals",  # seals (auditq/seals)
    "public.audit_archives",  # retention (auditq/retention)
    "public.audit_pii_keys",  # personal data keys (auditq/pii)
    # alerts (auditq/alerts): config, state, outbox and history
    "public.alert_channels",
    "public.alert_rules",
    "public.alert_rule_state",
    "public.alert_silences",
    "public.alert_outbox",
    "public.alert_history",
    "public.alert_meta",
    "public.alert_leases",
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied; started again if an earlier test stopped it."""
    redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=False) as client:
        yield client


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three masters, no replicas, append-only on (so a test can restart one of them)."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """The session cluster, every master emptied; a node an earlier test stopped is started."""
    redis_cluster.start()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("postgres") / "data", fast=True) as server:
        yield server


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PostgresServer) -> str:
    """Superuser DSN of a database with Supabase's roles and every migration applied."""
    create_supabase_roles(pg_server.dsn)
    apply_migrations(pg_server.dsn)
    return pg_server.dsn


@pytest.fixture
def clean_db(pg_server: PostgresServer, pg_dsn: str) -> str:
    """pg_dsn with TABLES_TO_CLEAN emptied and only the month partitions a fresh install has
    (and the server started if a test stopped it)."""
    pg_server.start()
    with psycopg.connect(pg_dsn) as conn:
        # Replica mode skips ordinary triggers, the append-only guard among them; only a
        # superuser may set it, and TRUNCATE stays revoked from every API role.
        conn.execute("SET session_replication_role = replica")
        # Partitions a test created for old months (retention) would change what the next
        # test sees: the current month and the MONTHS_AHEAD after it are what the migrations make.
        now = datetime.now(UTC)
        fresh = {
            f"{(now.year * 12 + now.month - 1 + k) // 12}-{(now.month - 1 + k) % 12 + 1:02d}"
            for k in range(partitions.MONTHS_AHEAD + 1)
        }
        for name in partitions.names(conn):
            if partitions.month_of(name) not in (None, *fresh):
                conn.execute(f"drop table public.{name}")
        conn.execute("TRUNCATE " + ", ".join(TABLES_TO_CLEAN))
    return pg_dsn


@pytest.fixture(scope="session")
def postgrest(
    tmp_path_factory: pytest.TempPathFactory, pg_server: PostgresServer, pg_dsn: str
) -> Iterator[LocalSupabase]:
    """PostgREST behind a /rest/v1 gateway: `.url` is SUPABASE_URL, `.service_key` its key.

    Started after the migrations because PostgREST caches the schema; call
    `.reload_schema()` after changing it. A test that stops `.server` starts it again.
    """
    db_uri = pg_server.dsn_for("authenticator", DEV_AUTHENTICATOR_PASSWORD)
    with LocalSupabase(tmp_path_factory.mktemp("postgrest"), db_uri) as supabase:
        yield supabase


def pytest_sessionstart(session: pytest.Session) -> None:
    # Python ends on SIGTERM without unwinding, leaving the servers running; as Ctrl-C,
    # the session stops and every fixture finalizer (and atexit) runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
