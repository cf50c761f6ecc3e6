"""The worker's seal job: two workers draining and sealing at once leave one clean chain."""

import json

import psycopg

from auditq.config import Settings
from auditq.seals import signing
from auditq.seals.verify import verify
from auditq.stores.postgres import PostgresStore
from tests.polling import wait_for
from tests.worker.helpers import KEYS, drained, enqueue, make_events


def unsealed(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select count(*) from audit_logs where txid >="
            " coalesce((select max(to_txid) from audit_seals), '0'::xid8)"
        ).fetchone()[0]


def test_two_workers_drain_and_seal_into_one_chain(workers, queue, redis_client, clean_db):
    pair = signing.generate()
    knobs = {
        "seal_key": pair.private,
        "seal_interval": 0.3,
        "seal_grace": 0,
        "batch_start": 100,
        "batch_max": 300,  # many small transactions, so the seals interleave with the drain
    }
    workers.start(**knobs)
    workers.start(**knobs)
    enqueue(queue, make_events(4000))
    wait_for(lambda: drained(redis_client), "the queue to drain", 120, workers.logs)
    wait_for(lambda: unsealed(clean_db) == 0, "every row sealed", 120, workers.logs)

    store = PostgresStore(clean_db)
    report = verify(store, signing.checker(Settings(seal_public_key=pair.public)))
    store.close()
    assert report.ok, report.findings
    assert report.rows == 4000 and report.unsealed == 0
    status = json.loads(redis_client.get(KEYS.seal_pass))
    assert status["error"] is None


def test_a_worker_without_a_seal_key_drains_and_does_not_seal(
    workers, queue, redis_client, clean_db
):
    workers.start()
    enqueue(queue, make_events(50))
    wait_for(lambda: drained(redis_client), "the queue to drain", 60, workers.logs)
    assert unsealed(clean_db) == 50
    assert "not sealing: AUDITQ_SEAL_KEY is not set" in workers.logs()
