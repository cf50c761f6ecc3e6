"""Monthly partitions of audit_logs: the conversion of a table that already holds rows and
seals, idempotent inserts on the new key, guards on every partition, pruning, and the moves
out of the default partition (real Postgres, both stores)."""

from __future__ import annotations

import shutil
import threading
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from auditq.config import Settings
from auditq.decoding import decode_entry
from auditq.migrate import MIGRATIONS_DIR, apply_migrations
from auditq.retention.partitions import maintain, month_of, names, overview, partition_name
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import verify
from auditq.stores import EventFilters
from auditq.stores.postgres import PostgresStore, _select
from tests.auditq.retention.helpers import at, month_events, partitions
from tests.auditq.seals.helpers import events
from tests.polling import wait_for

PARTITIONS = "20261129000400"


@pytest.fixture
def old_db(pg_server, pg_dsn, tmp_path):
    """A database migrated up to (not including) the partitions: the table as it was."""
    name = f"conv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name.split("_", 1)[0] < PARTITIONS:
            shutil.copy(path, before / path.name)
    dsn = pg_server.dsn_for("postgres", database=name)
    apply_migrations(dsn, before)
    yield dsn
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def insert_as_before(dsn: str, batch) -> None:
    """One transaction of rows into the table as it was before the later migrations (no pii
    column yet, which today's stores write)."""
    with psycopg.connect(dsn) as conn:
        conn.cursor().executemany(
            "insert into public.audit_logs (id, occurred_at, action, actor_id, target_id,"
            " metadata, ingest_path) values (%s, %s, %s, %s, %s, %s, 'queue')",
            [
                (e.id, e.occurred_at, e.action, e.actor_id, e.target_id, Jsonb(e.metadata))
                for e in batch
            ],
        )


def test_conversion_keeps_every_row_and_the_seals_still_verify(old_db, signer, checker):
    store = PostgresStore(old_db, timeout=5)
    try:
        history = month_events([(2026, 1), (2026, 3), (2026, 3)]) + events(4)
        insert_as_before(old_db, history[:5])
        insert_as_before(old_db, history[5:])
        sealed = seal_pass(store, signer, grace=0)
        assert sealed.rows == len(history)
        with psycopg.connect(old_db) as conn:
            before = conn.execute(
                "select id, occurred_at, txid::text, public.audit_row_canonical(l)"
                " from public.audit_logs l order by id"
            ).fetchall()

        assert apply_migrations(old_db) != []

        with psycopg.connect(old_db) as conn:
            after = conn.execute(
                "select id, occurred_at, txid::text, public.audit_row_canonical(l)"
                " from public.audit_logs l order by id"
            ).fetchall()
            kind = conn.execute(
                "select relkind from pg_class where oid = 'public.audit_logs'::regclass"
            ).fetchone()[0]
        assert kind == "p"
        assert after == before  # nothing lost, nothing doubled, every column (txid) intact
        parts = partitions(old_db)
        assert parts["audit_logs_y2026m01"] == 3 and parts["audit_logs_y2026m03"] == 6
        assert parts["audit_logs_default"] == 0
        now = datetime.now(UTC)
        assert f"audit_logs_y{now:%Y}m{now:%m}" in parts
        report = verify(store, checker, expect_head=sealed.head.hex())
        assert report.ok, report.findings
        assert report.rows == len(history)
        # Sealing goes on across the conversion: new rows, a new seal, the chain intact.
        store.insert_events(events(2, start=100))
        assert seal_pass(store, signer, grace=0).rows == 2
        assert verify(store, checker).ok
    finally:
        store.close()


def test_partitions_by_name_and_month(clean_db):
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            f"create table public.{partition_name('2017-09')} partition of public.audit_logs"
            " for values from ('2017-09-01') to ('2017-10-01')"
        )
        try:
            listed = names(conn)
        finally:
            conn.execute(f"drop table public.{partition_name('2017-09')}")
    assert listed[0] == "audit_logs_default" and "audit_logs_y2017m09" in listed
    assert listed == sorted(listed)  # so months come oldest first
    assert [month_of(name) for name in listed[:2]] == [None, "2017-09"]
    # Only the migration's names are months: a table that looks close is not one.
    assert month_of("audit_logs_y2017m9") is None and month_of("x_audit_logs_y2017m09") is None


def test_a_redelivered_event_is_stored_once(store, clean_db):
    fields = {"event": '{"action": "doc.read"}'}
    event = decode_entry("1767225600000-0", fields, 65536)  # id and time from the entry id
    again = decode_entry("1767225600000-0", fields, 65536)
    assert (again.id, again.occurred_at) == (event.id, event.occurred_at)
    assert store.insert_events([event]) == 1
    assert store.insert_events([again]) == 0
    assert store.insert_events([again, *month_events([(2026, 2)], 1)]) == 1
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("select count(*) from public.audit_logs").fetchone() == (2,)


def test_every_partition_is_guarded(clean_db):
    with psycopg.connect(clean_db) as conn:
        names = list(partitions(clean_db))
        assert "audit_logs_default" in names and len(names) >= 4
        for name in names:
            (rls,) = conn.execute(
                "select relrowsecurity from pg_class where oid = %s::regclass", (f"public.{name}",)
            ).fetchone()
            assert rls, name
            for role in ("anon", "authenticated", "service_role"):
                assert not conn.execute(
                    "select has_table_privilege(%s, %s, 'select')", (role, f"public.{name}")
                ).fetchone()[0], (role, name)
            triggers = {
                row[0]
                for row in conn.execute(
                    "select tgname from pg_trigger where tgrelid = %s::regclass",
                    (f"public.{name}",),
                )
            }
            assert {"audit_logs_append_only", "audit_logs_no_truncate"} <= triggers, name
            indexes = conn.execute(
                "select count(*) from pg_index where indrelid = %s::regclass", (f"public.{name}",)
            ).fetchone()[0]
            assert indexes == 6, name


def test_partition_rows_refuse_change_and_truncate(store, clean_db):
    store.insert_events(events(2))
    name = f"audit_logs_y{datetime.now(UTC):%Y}m{datetime.now(UTC):%m}"
    with psycopg.connect(clean_db, autocommit=True) as conn:
        for statement in (
            f"delete from public.{name}",
            f"update public.{name} set action = 'x'",
            f"truncate public.{name}",
            "delete from public.audit_logs",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("select count(*) from public.audit_logs").fetchone()[0] == 2


def explain(conn, query, params) -> str:
    return "\n".join(row[0] for row in conn.execute(sql.SQL("explain ") + query, params))


def test_explorer_queries_with_a_time_filter_prune_partitions(clean_db):
    # The explorer's own query (auditq/stores/postgres.py), planned with and without a filter.
    with psycopg.connect(clean_db) as conn:
        conn.execute("select public.audit_logs_month_partition('2025-06-01')")
        window = EventFilters(since=at(2025, 6, 2), until=at(2025, 6, 20), action="doc.read")
        plan = explain(conn, *_select(window, None, 50))
        everything = explain(conn, *_select(EventFilters(), None, 50))
    assert "audit_logs_y2025m06" in plan
    assert "audit_logs_default" not in plan and "audit_logs_y2026" not in plan
    assert "audit_logs_default" in everything and "audit_logs_y2025m06" in everything


@pytest.fixture(params=["postgres", "supabase"])
def settings_for(request, pg_dsn, postgrest, clean_db):
    """Settings that reach the database one way: DATABASE_URL, or only SUPABASE_URL."""
    if request.param == "postgres":
        return Settings(database_url=clean_db)
    return Settings(supabase_url=postgrest.url, supabase_service_role_key=postgrest.service_key)


def test_rows_in_the_default_partition_move_to_their_month(settings_for, clean_db, signer, checker):
    store = PostgresStore(clean_db, timeout=5)
    try:
        late = month_events([(2019, 4), (2019, 5)], per_month=2)  # no partition for these
        store.insert_events(late)
        store.insert_events(events(3))
        sealed = seal_pass(store, signer, grace=0)
        before = partitions(clean_db)
        assert before["audit_logs_default"] == 4

        assert maintain(settings_for) == {"2019-04": 2, "2019-05": 2}

        after = partitions(clean_db)
        assert after["audit_logs_default"] == 0
        assert after["audit_logs_y2019m04"] == 2 and after["audit_logs_y2019m05"] == 2
        for name in ("audit_logs_y2019m04", "audit_logs_default"):
            assert name in partitions(clean_db)
        with psycopg.connect(clean_db) as conn:
            moved = conn.execute(
                "select metadata from public.audit_logs"
                " where action = 'auditq.partition.rows_moved' and category = 'critical'"
                " order by metadata->>'month'"
            ).fetchall()
        assert [m[0]["month"] for m in moved] == ["2019-04", "2019-05"]
        # Same rows, same txids: the seals made before the move still verify.
        report = verify(store, checker, expect_head=sealed.head.hex())
        assert report.ok, report.findings
        assert maintain(settings_for) == {}  # nothing left to move
        now = datetime.now(UTC)
        ahead = {
            f"audit_logs_y{(now.year * 12 + now.month - 1 + k) // 12}m"
            f"{(now.month - 1 + k) % 12 + 1:02d}"
            for k in range(3)
        }
        assert ahead <= set(partitions(clean_db))
    finally:
        store.close()


def test_the_service_role_cannot_move_rows_any_other_way(postgrest, clean_db):
    # Only the maintenance function is granted; the partition helpers are not.
    key = postgrest.service_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    for name, body in (
        ("audit_logs_month_partition", {"p_month": "2019-01-01T00:00:00Z"}),
        ("audit_logs_guard_partition", {"p_name": "audit_logs_default"}),
    ):
        response = httpx.post(f"{postgrest.url}/rest/v1/rpc/{name}", json=body, headers=headers)
        assert response.status_code in (401, 403, 404), (name, response.text)


def waiting_pid(conn: psycopg.Connection, function: str) -> int | None:
    """The backend running ``function`` once it waits for a lock."""
    row = conn.execute(
        "select l.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid"
        " where not l.granted and a.query like %s limit 1",
        (f"%public.{function}(%",),
    ).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize("function", [maintain, overview], ids=["maintain", "overview"])
def test_the_partition_functions_lock_the_parent_before_any_partition(clean_db, function):
    # DROP or DETACH of a month partition locks audit_logs, then that partition, then the
    # default partition (its bounds change). A function that took a partition before the
    # parent would deadlock with it: seen as maintenance reading the default partition, then
    # waiting for the parent to insert its rows_moved events, while a DROP waited for the
    # default. Here a session does what such a DROP does, around the function's run.
    month = next(name for name in partitions(clean_db) if name != "audit_logs_default")
    outcome: dict[str, object] = {}
    with psycopg.connect(clean_db) as ddl, psycopg.connect(clean_db, autocommit=True) as watch:
        ddl.execute("lock table only public.audit_logs in access exclusive mode")
        ddl.execute(f"lock table only public.{month} in access exclusive mode")
        settings = Settings(database_url=clean_db)
        runner = threading.Thread(
            target=lambda: outcome.update(result=function(settings)), daemon=True
        )
        runner.start()
        name = f"audit_partitions_{function.__name__}"
        pid = wait_for(lambda: waiting_pid(watch, name), "the run to wait", 30)
        held = watch.execute(
            "select c.relname from pg_locks l join pg_class c on c.oid = l.relation"
            " where l.pid = %s and l.granted and c.relname like 'audit_logs%%'",
            (pid,),
        ).fetchall()
        assert held == [], "it holds a partition while it waits for the parent"
        # The DROP's last step: the default partition. A deadlock would fail one side here.
        ddl.execute("lock table only public.audit_logs_default in access exclusive mode")
        ddl.rollback()
    runner.join(30)
    assert "result" in outcome, "the run failed or never finished"
    if function is maintain:
        assert outcome["result"] == {}  # nothing was in the default partition
    else:
        assert month in {part["name"] for part in outcome["result"]}
