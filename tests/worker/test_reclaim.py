"""Reclaim: what a dead worker held is taken over and stored once; worn-out entries dead-letter."""

import threading

import pytest

from auditq.heartbeat import list_workers
from auditq.keys import GROUP
from auditq.queue import Queue, connect
from auditq.stats import Stats
from auditq.stores.postgres import PostgresStore
from tests.polling import wait_for
from tests.worker.helpers import (
    KEYS,
    TableLock,
    assert_exactly_once,
    blocked_on_lock,
    drained,
    enqueue,
    expected_ids,
    heartbeat_of,
    make_events,
    pending,
    totals,
)
from worker.batching import AdaptiveBatch
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter
from worker.reclaim import Reclaim


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    workers, queue, redis_client, clean_db
):
    payloads = make_events(5_000)
    entry_ids = enqueue(queue, payloads)
    knobs = {"claim_timeout": 2, "heartbeat_ttl": 2}

    # The lock makes the first worker's insert hang, so the kill lands inside a batch.
    with TableLock(clean_db):
        victim = workers.start(**knobs)
        wait_for(lambda: blocked_on_lock(clean_db), "an insert blocked by the lock", 60)
        beat = wait_for(
            lambda: (b := heartbeat_of(redis_client, victim)) and b["state"] == "draining" and b,
            "the victim's heartbeat to say draining",
            30,
            workers.logs,
        )
        held = pending(redis_client, beat["id"])
        assert held > 0
        victim.kill()
        victim.wait()
    assert queue.length() == 5_000  # nothing was acked

    workers.start(**knobs)
    wait_for(lambda: drained(redis_client), "the stream to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert redis_client.xlen(KEYS.dead) == 0
    counters = totals(redis_client)
    assert counters["inserted"] == 5_000
    assert counters["reclaimed"] >= held  # taken over from the victim, stored once
    # The killed worker's member stays, and reads as stale once its hash has expired.
    wait_for(
        lambda: any(
            w["id"] == beat["id"] and w["status"] == "stale" and w["state"] is None
            for w in list_workers(redis_client, KEYS, ttl=2)
        ),  # fmt: skip
        "the victim to read as stale",
        30,
        workers.logs,
    )


def make_reclaim(redis_url, dsn, max_deliveries=5, claim_timeout=0.0):
    client = connect(redis_url)
    queue = Queue(client, KEYS, max_len=1_000_000)
    sizer = AdaptiveBatch(start=50, minimum=10, maximum=1000, max_bytes=4_000_000, target_ms=500)
    status = WorkerStatus(stopping=threading.Event(), batch_size=sizer.size, pid=7)
    store = PostgresStore(dsn, timeout=10)
    inserter = BatchInserter(
        queue, Stats(client, KEYS), store, sizer, status,
        max_event_bytes=65536, retry_base=0.1, retry_max=0.5,
    )  # fmt: skip
    return Reclaim(queue, inserter, claim_timeout, max_deliveries), store


def test_entries_delivered_too_often_are_dead_lettered_the_rest_stored(
    queue, redis_url, redis_client, clean_db
):
    queue.ensure_group()
    payloads = make_events(30)
    entry_ids = enqueue(queue, payloads)
    queue.read("crashing-worker", 20)  # delivery 1 of the first 20
    for _ in range(5):  # five more crashes on the first 10
        queue.reclaim("crashing-worker", min_idle_ms=0, count=10)
    queue.read("crashing-worker", 100)  # the last 10, once

    reclaim, store = make_reclaim(redis_url, clean_db, max_deliveries=5)
    reclaim.run()
    store.close()

    assert drained(redis_client)
    dead = redis_client.xrange(KEYS.dead)
    assert sorted(f[b"entry_id"].decode() for _, f in dead) == sorted(entry_ids[:10])
    assert all(f[b"reason"] == b"delivered 7 times, over max_deliveries" for _, f in dead)
    assert all(f[b"deliveries"] == b"7" for _, f in dead)
    assert_exactly_once(clean_db, expected_ids(entry_ids[10:], payloads[10:]))
    counters = totals(redis_client)
    assert counters["dead_lettered"] == 10 and counters["inserted"] == 20


def test_reclaim_reaches_entries_behind_a_live_workers_long_batch(
    queue, redis_url, redis_client, clean_db
):
    queue.ensure_group()
    enqueue(queue, make_events(3_000))
    dead_payloads = make_events(40, start=3_000)
    dead_ids = enqueue(queue, dead_payloads)
    live = queue.read("live-worker", 3_000)
    queue.read("dead-worker", 100)
    wait_for(
        lambda: min(p["time_since_delivered"] for p in redis_client.xpending_range(
            KEYS.stream, GROUP, "-", "+", 10, consumername="dead-worker")) > 300,
        "the dead worker's entries to idle",
    )  # fmt: skip
    queue.renew("live-worker", [e.id for e in live])  # the live worker's lease is fresh

    # One XAUTOCLAIM call with COUNT 50 scans only about 500 pending entries.
    reclaim, store = make_reclaim(redis_url, clean_db, claim_timeout=0.3)
    reclaim.run()
    store.close()

    assert_exactly_once(clean_db, expected_ids(dead_ids, dead_payloads))
    assert pending(redis_client, "live-worker") == 3_000
    assert pending(redis_client, "dead-worker") == 0


def test_a_batch_that_keeps_failing_is_dead_lettered_with_its_first_reason(
    queue, redis_url, redis_client, clean_db, monkeypatch
):
    queue.ensure_group()
    entry_ids = enqueue(queue, make_events(5))
    reclaim, store = make_reclaim(redis_url, clean_db, max_deliveries=2)
    inserter = reclaim.inserter

    # A failure outside any one entry (a stand-in for a bug): the batch stays pending.
    def broken(message):
        def store(*_args):
            raise RuntimeError(message)

        return store

    monkeypatch.setattr(inserter, "_store", broken("the first failure"))
    with inserter.lock, pytest.raises(RuntimeError):
        inserter.handle(queue.read(inserter.consumer, 10), backlog=False)
    monkeypatch.setattr(inserter, "_store", broken("a later failure"))
    for _ in range(2):  # redelivered, failing differently now
        with inserter.lock, pytest.raises(RuntimeError):
            inserter.handle(queue.reclaim("other", min_idle_ms=0, count=10), backlog=False)

    monkeypatch.undo()
    reclaim.run()  # delivered 4 times now, over max_deliveries=2
    store.close()

    dead = redis_client.xrange(KEYS.dead)
    assert sorted(f[b"entry_id"].decode() for _, f in dead) == sorted(entry_ids)
    for _, fields in dead:
        assert fields[b"reason"] == (
            b"RuntimeError: the first failure (then delivered 4 times, over max_deliveries)"
        )
    assert drained(redis_client)
    assert not redis_client.exists(KEYS.failures)  # forgotten once dead-lettered


def test_a_batch_stored_after_a_failure_forgets_the_failure(
    queue, redis_url, redis_client, clean_db, monkeypatch
):
    queue.ensure_group()
    payloads = make_events(5)
    entry_ids = enqueue(queue, payloads)
    reclaim, store = make_reclaim(redis_url, clean_db)
    inserter = reclaim.inserter

    def broken(*_args):
        raise RuntimeError("a stand-in for a bug")

    monkeypatch.setattr(inserter, "_store", broken)
    with inserter.lock, pytest.raises(RuntimeError):
        inserter.handle(queue.read(inserter.consumer, 10), backlog=False)
    assert redis_client.hlen(KEYS.failures) == 5
    monkeypatch.undo()
    reclaim.run()  # redelivered (a second delivery) and stored this time
    store.close()

    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert drained(redis_client)
    assert not redis_client.exists(KEYS.failures)
