"""The worker process: SIGTERM handling (finish or leave the batch, exit, drop the heartbeat)."""

import signal
import subprocess
import sys

from tests.polling import wait_for
from tests.worker.helpers import (
    KEYS,
    REPO,
    TableLock,
    assert_exactly_once,
    blocked_on_lock,
    drained,
    enqueue,
    expected_ids,
    heartbeat_of,
    make_events,
    pending,
    row_count,
)
from worker.app import EXIT_FORCED


def test_sigterm_during_a_drain_finishes_the_batch_and_exits_cleanly(
    workers, queue, redis_client, clean_db
):
    payloads = make_events(30_000)
    entry_ids = enqueue(queue, payloads)
    first = workers.start(batch_start=100, batch_max=200)
    beat = wait_for(
        lambda: row_count(clean_db) > 0 and heartbeat_of(redis_client, first),
        "the first batches",
        60,
        workers.logs,
    )
    first.send_signal(signal.SIGTERM)
    assert workers.wait_exit(first, timeout=40) == 0
    # Gone cleanly: no heartbeat left to go stale, and nothing held back.
    assert redis_client.exists(KEYS.worker(beat["id"])) == 0
    assert redis_client.zscore(KEYS.workers, beat["id"]) is None
    assert pending(redis_client, beat["id"]) == 0
    assert queue.length() > 0  # it stopped in the middle of the backlog

    workers.start()
    wait_for(lambda: drained(redis_client), "the rest to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))


def test_sigterm_while_an_insert_hangs_exits_after_the_grace_period(
    workers, queue, redis_client, clean_db
):
    payloads = make_events(2_000)
    entry_ids = enqueue(queue, payloads)
    knobs = {"claim_timeout": 2, "shutdown_grace": 2, "store_timeout": 120}
    with TableLock(clean_db):
        stuck = workers.start(**knobs)
        wait_for(lambda: blocked_on_lock(clean_db), "an insert blocked by the lock", 60)
        beat = wait_for(lambda: heartbeat_of(redis_client, stuck), "a heartbeat", 30)
        stuck.send_signal(signal.SIGTERM)
        # The lock is still held, so the insert cannot have finished: the grace ended it.
        assert workers.wait_exit(stuck, timeout=60) == EXIT_FORCED
        assert redis_client.exists(KEYS.worker(beat["id"])) == 0
        assert pending(redis_client, beat["id"]) > 0  # left for reclaim, not lost
    assert row_count(clean_db) == 0

    workers.start(**knobs)
    wait_for(lambda: drained(redis_client), "the rest to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))


def test_without_a_store_configured_the_worker_refuses_to_start(redis_url):
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no store configured" in result.stderr
