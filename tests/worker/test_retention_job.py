"""The worker's retention jobs: a row stored in the default partition is moved into its
month's partition by the worker that holds the lease; the daily pass archives and drops old
months and records its outcome (the alert metric reads it)."""

import psycopg

from auditq.events import build_event
from auditq.retention.status import last_pass, retention_failing
from auditq.stores.postgres import PostgresStore
from tests.polling import wait_for
from tests.worker.helpers import KEYS


def in_default(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select count(*) from public.audit_logs_default").fetchone()[0]


def test_a_worker_moves_rows_out_of_the_default_partition(workers, clean_db):
    store = PostgresStore(clean_db)
    store.insert_events([build_event({"action": "late", "occurred_at": "2018-02-03T04:05:06Z"})])
    store.close()
    assert in_default(clean_db) == 1
    try:
        workers.start()
        workers.start()  # two workers: the lease lets one do it
        wait_for(lambda: in_default(clean_db) == 0, "the row moved", 60, workers.logs)
        with psycopg.connect(clean_db) as conn:
            assert conn.execute("select count(*) from public.audit_logs_y2018m02").fetchone() == (
                1,
            )
            assert conn.execute(
                "select count(*) from public.audit_logs"
                " where action = 'auditq.partition.rows_moved'"
            ).fetchone() == (1,)
    finally:
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("drop table if exists public.audit_logs_y2018m02")


def test_the_daily_pass_archives_old_months_and_records_its_outcome(
    workers, redis_client, clean_db, tmp_path
):
    store = PostgresStore(clean_db)
    store.insert_events(
        [build_event({"action": "old", "occurred_at": "2017-05-06T07:08:09Z"}) for _ in range(3)]
    )
    store.close()
    try:
        workers.start(retention_days=365, archive_url=f"file://{tmp_path}/arch")
        wait_for(
            lambda: last_pass(redis_client, KEYS.prefix) is not None,
            "a retention pass",
            60,
            workers.logs,
        )
        outcome = last_pass(redis_client, KEYS.prefix)
        assert outcome["error"] is None, outcome
        assert [(m["month"], m["rows"], m["action"]) for m in outcome["months"]] == [
            ("2017-05", 3, "dropped")
        ]
        assert (tmp_path / "arch" / "2017-05" / "part-001" / "manifest.json").exists()
        assert retention_failing(redis_client, KEYS.prefix) == 0
    finally:
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("drop table if exists public.audit_logs_y2017m05")


def test_a_worker_with_only_supabase_url_says_retention_cannot_run(
    workers, postgrest, redis_client, tmp_path
):
    workers.start(postgrest, retention_days=30, archive_url=f"file://{tmp_path}/arch")
    wait_for(
        lambda: last_pass(redis_client, KEYS.prefix) is not None,
        "a retention pass",
        60,
        workers.logs,
    )
    assert (
        "needs DATABASE_URL (only SUPABASE_URL is set)"
        in last_pass(redis_client, KEYS.prefix)["error"]
    )
    assert retention_failing(redis_client, KEYS.prefix) == 1
    assert "retention: pass failed" in workers.logs()
