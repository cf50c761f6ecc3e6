"""Backoff: the retry policy itself, and a real store outage under load (supabase store)."""

import threading
import time

import pytest
from tenacity import RetryCallState

from auditq.heartbeat import list_workers
from auditq.stores import DataRejected, StoreUnavailable
from tests.polling import wait_for
from tests.worker.helpers import (
    KEYS,
    assert_exactly_once,
    drained,
    enqueue,
    expected_ids,
    make_events,
    reported,
    row_count,
    totals,
)
from worker.backoff import Interrupted, retrying


def waits(policy, attempts: int) -> list[float]:
    out = []
    for attempt in range(1, attempts + 1):
        state = RetryCallState(policy, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        out.append(policy.wait(state))
    return out


def test_waits_grow_exponentially_to_the_cap_with_jitter_on_top():
    policy = retrying(base=1.0, cap=8.0, stopping=threading.Event())
    samples = [waits(policy, 8) for _ in range(50)]
    floors = [1, 2, 4, 8, 8, 8, 8, 8]
    for run in samples:
        assert all(floor <= w <= floor + 1.0 for floor, w in zip(floors, run, strict=True))
    # Jittered: workers that failed together spread out, also once they are at the cap.
    assert len({round(run[-1], 6) for run in samples}) > 1


def test_retries_store_unavailable_until_it_works_and_passes_data_errors_through():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise StoreUnavailable("postgres 08006: connection lost")
        return 42

    failed = []
    policy = retrying(
        base=0.01, cap=0.02, stopping=threading.Event(), after=lambda s: failed.append(1)
    )
    assert policy(flaky) == 42
    assert len(calls) == 3 and len(failed) == 2

    def refused():
        calls.append(1)
        raise DataRejected("postgres 22P02: invalid input")

    calls.clear()
    with pytest.raises(DataRejected):
        policy(refused)
    assert len(calls) == 1


def test_the_stop_event_ends_a_backoff_sleep_at_once():
    stopping = threading.Event()
    policy = retrying(base=600.0, cap=600.0, stopping=stopping)
    attempts = []

    def down():
        attempts.append(1)
        threading.Timer(0.2, stopping.set).start()
        raise StoreUnavailable("postgrest 502: down")

    with pytest.raises(Interrupted):
        policy(down)  # a 600 s wait that the stop event cuts short
    assert attempts == [1]


def test_the_store_down_for_10_seconds_under_load_loses_and_duplicates_nothing(
    workers, queue, redis_client, clean_db, postgrest
):
    for _ in range(2):
        workers.start(supabase=postgrest)
    payloads = make_events(24_000)
    entry_ids: list[str] = []

    def produce():  # about 15 s of steady traffic, before, during and after the outage
        for i in range(0, len(payloads), 400):
            entry_ids.extend(enqueue(queue, payloads[i : i + 400]))
            time.sleep(0.25)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(lambda: row_count(clean_db) > 0, "the first rows", 60, workers.logs)
        postgrest.server.stop()
        states: set[str] = set()
        outage_ends = time.monotonic() + 10
        while time.monotonic() < outage_ends:
            states |= {w["state"] for w in list_workers(redis_client, KEYS) if w["state"]}
            time.sleep(0.05)
        postgrest.server.start()
    finally:
        producer.join()

    wait_for(lambda: drained(redis_client), "the backlog to drain", 120, workers.logs)
    assert len(entry_ids) == 24_000
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert "backoff" in states
    counters = totals(redis_client)
    assert counters["failed_batches"] >= 1 and counters["retried"] >= 1
    assert "dead_lettered" not in counters and redis_client.xlen(KEYS.dead) == 0
    # A batch committed just as PostgREST went away comes back as an error, is retried,
    # and is then counted as duplicates: together they account for every event once.
    assert counters["inserted"] + counters.get("duplicates", 0) == 24_000
    # The same story in the workers' own totals (heartbeats lag by up to one interval).
    inserted = counters["inserted"]
    wait_for(lambda: reported(redis_client, "inserted") == inserted, "the heartbeats", 30)
    assert reported(redis_client, "failed_batches") >= 1
    assert reported(redis_client, "retried") >= 1
