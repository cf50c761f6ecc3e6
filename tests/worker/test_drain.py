"""The drain: real worker processes move the stream into Postgres, exactly once, adaptively."""

import time

from auditq.heartbeat import list_workers
from auditq.keys import GROUP
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
    reported,
    totals,
)


def test_three_workers_drain_50000_events_exactly_once(workers, queue, redis_client, clean_db):
    payloads = make_events(50_000)
    entry_ids = enqueue(queue, payloads)
    procs = [workers.start() for _ in range(3)]

    wait_for(lambda: drained(redis_client), "the stream to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    counters = totals(redis_client)
    assert counters["inserted"] == 50_000
    assert "dead_lettered" not in counters and redis_client.xlen(KEYS.dead) == 0
    # Three consumers shared the group, each with its own heartbeat and its share.
    assert len(redis_client.xinfo_consumers(KEYS.stream, GROUP)) == 3
    alive = {w["pid"] for w in list_workers(redis_client, KEYS) if w["status"] == "alive"}
    assert alive == {p.pid for p in procs}
    wait_for(
        lambda: reported(redis_client, "inserted") == 50_000,
        "the heartbeats to report every insert",
        30,
        workers.logs,
    )


def test_batch_size_grows_under_a_backlog_and_halves_after_a_slow_batch(
    workers, queue, redis_client, clean_db
):
    enqueue(queue, make_events(40_000))
    proc = workers.start(batch_min=20, batch_start=40, batch_max=1000, batch_target_ms=500)

    def grown():
        beat = heartbeat_of(redis_client, proc)
        return beat is not None and beat["batch_size"] >= 40 + 5 * 20

    wait_for(grown, "the batch size to grow", 60, workers.logs)

    def size_while_blocked() -> int:
        wait_for(lambda: blocked_on_lock(clean_db), "a batch blocked by the lock", 30, workers.logs)
        seen = time.time()
        beat = wait_for(
            lambda: (b := heartbeat_of(redis_client, proc)) and b["last_beat"] > seen and b,
            "a heartbeat from the blocked worker",
            30,
            workers.logs,
        )
        assert beat["state"] == "draining"
        return beat["batch_size"]

    with TableLock(clean_db) as first:
        before = size_while_blocked()
        time.sleep(1.5)  # the blocked batch is now far over its 500 ms target
        # Queue a second lock behind the blocked insert: Postgres grants locks in order, so
        # the slow batch commits and the very next batch blocks again, before it can grow.
        second = TableLock(clean_db).start()
        wait_for(lambda: blocked_on_lock(clean_db, TableLock.application), "the second lock")
        first.release()
        wait_for(second.acquired.is_set, "the second lock to be granted", 30, workers.logs)
        after = size_while_blocked()
        second.release()
    assert before > 40
    assert after == max(20, before // 2)
    wait_for(lambda: drained(redis_client), "the stream to drain", 120, workers.logs)
