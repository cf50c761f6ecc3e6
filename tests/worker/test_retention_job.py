"""The worker's partition job: a row stored in the default partition is moved into its
month's partition by the worker that holds the lease."""

import psycopg

from auditq.events import build_event
from auditq.stores.postgres import PostgresStore
from tests.polling import wait_for


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
