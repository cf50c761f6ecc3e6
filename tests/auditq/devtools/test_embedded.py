"""auditq.devtools.embedded: the servers really start, answer, stop and come back with their
data."""

from pathlib import Path

import psycopg
import pytest
import redis

from auditq.devtools.embedded import (
    DEV_AUTHENTICATOR_PASSWORD,
    PostgresServer,
    RedisServer,
    ServerError,
    create_supabase_roles,
    free_port,
)


def test_redis_answers_and_stops(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        assert redis.Redis.from_url(server.url).ping()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert not server.running
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url).ping()


def test_persistent_redis_keeps_data_across_a_restart_on_the_same_port(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        redis.Redis.from_url(server.url).xadd("s", {"k": "v"})
        server.stop()
        server.start()
        assert [fields for _, fields in redis.Redis.from_url(server.url).xrange("s")] == [
            {b"k": b"v"}
        ]
    finally:
        server.stop()


def test_persistent_redis_keeps_acknowledged_writes_across_a_kill(tmp_path: Path) -> None:
    # Redis writes the AOF before it replies, so a killed process (unlike a lost machine)
    # loses nothing it acknowledged, even with appendfsync everysec.
    with RedisServer(tmp_path / "redis", persistent=True) as server:
        redis.Redis.from_url(server.url).rpush("l", *range(1000))
        server.kill()
        assert not server.running
        server.start()
        assert redis.Redis.from_url(server.url).llen("l") == 1000


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "first") as first:
        taken = RedisServer(tmp_path / "second", port=first.port)
        with pytest.raises(ServerError, match="Address already in use"):
            taken.start()


def test_postgres_answers_over_tcp_and_recovers_after_a_kill(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg", port=free_port(), fast=True) as server:
        assert server.dsn == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("create table kept (n int)")
            conn.execute("insert into kept values (1)")
        server.kill()
        server.start()  # same data directory and port: crash recovery, then ready
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("select n from kept").fetchall() == [(1,)]
            assert conn.execute("show fsync").fetchone() == ("off",)


def test_postgres_is_crash_safe_unless_fast(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as server, psycopg.connect(server.dsn) as conn:
        assert conn.execute("show fsync").fetchone() == ("on",)
        assert conn.execute("show full_page_writes").fetchone() == ("on",)


def roles(dsn: str) -> dict[str, tuple[bool, bool, bool]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select rolname, rolcanlogin, rolbypassrls, rolinherit from pg_roles"
            " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
        ).fetchall()
    return {name: tuple(flags) for name, *flags in rows}


def test_supabase_roles_are_created_once_and_usable(pg_server: PostgresServer) -> None:
    create_supabase_roles(pg_server.dsn)
    create_supabase_roles(pg_server.dsn)  # again: no error, nothing changes

    assert roles(pg_server.dsn) == {
        "anon": (False, False, True),
        "authenticated": (False, False, True),
        "service_role": (False, True, True),
        "authenticator": (True, False, False),
    }
    with psycopg.connect(pg_server.dsn_for("authenticator", DEV_AUTHENTICATOR_PASSWORD)) as conn:
        conn.execute("set role service_role")
        assert conn.execute("select has_schema_privilege('public', 'usage')").fetchone() == (True,)
