"""The pipelined drain: batch N+1 is read and decoded while batch N is written.

Whatever point a worker dies or stops at, an entry is acked only after the commit that
stored it: crashes lose and duplicate nothing, a store failure holds both batches (leases
renewed) until they are stored, and SIGTERM acks only what committed.
"""

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from auditq.keys import GROUP
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore
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
    make_inserter,
    pending,
    row_count,
    totals,
)
from worker.app import EXIT_FORCED
from worker.drain import Drain
from worker.reclaim import Reclaim

BATCH = 200
# A fixed batch size, so "two batches held" is an exact count of pending entries.
FIXED = {"batch_min": BATCH, "batch_start": BATCH, "batch_max": BATCH}


def in_flight_and_read_ahead(workers, redis_client, dsn, proc) -> str:
    """Wait until batch N is blocked in the store and N+1 is read; return the consumer."""
    wait_for(lambda: blocked_on_lock(dsn), "batch N blocked by the lock", 60, workers.logs)
    beat = wait_for(lambda: heartbeat_of(redis_client, proc), "a heartbeat", 30, workers.logs)
    wait_for(
        lambda: pending(redis_client, beat["id"]) == 2 * BATCH,
        "batch N+1 read ahead while N is in flight",
        30,
        workers.logs,
    )
    return beat["id"]


def test_sigkill_with_batch_n_in_flight_and_n_plus_1_decoded_loses_and_duplicates_nothing(
    workers, queue, redis_client, clean_db
):
    payloads = make_events(10 * BATCH)
    entry_ids = enqueue(queue, payloads)
    knobs = {**FIXED, "claim_timeout": 2, "heartbeat_ttl": 2}
    with TableLock(clean_db):
        victim = workers.start(**knobs)
        consumer = in_flight_and_read_ahead(workers, redis_client, clean_db, victim)
        # Read ahead, and no further: a worker holds at most two batches.
        time.sleep(0.5)
        assert pending(redis_client, consumer) == 2 * BATCH
        victim.kill()
        victim.wait()
    assert queue.length() == 10 * BATCH  # nothing acked
    assert row_count(clean_db) == 0

    workers.start(**knobs)
    wait_for(lambda: drained(redis_client), "the stream to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert redis_client.xlen(KEYS.dead) == 0
    assert totals(redis_client)["reclaimed"] >= 2 * BATCH


def test_sigkill_at_several_points_of_a_running_pipelined_drain_loses_and_duplicates_nothing(
    workers, queue, redis_client, clean_db
):
    # Killed while rows are landing: between them, the kills fall on inserts in flight,
    # reads ahead, and acks in flight; each restart takes over what the last one held.
    payloads = make_events(60 * BATCH)
    entry_ids = enqueue(queue, payloads)
    knobs = {**FIXED, "claim_timeout": 1, "heartbeat_ttl": 2}
    for stored in (3 * BATCH, 15 * BATCH, 30 * BATCH):
        victim = workers.start(**knobs)
        enough = lambda n=stored: row_count(clean_db) >= n  # noqa: E731
        wait_for(enough, f"{stored} rows", 120, workers.logs)
        victim.kill()
        victim.wait()
        # Acked means stored: every entry gone from the stream has its row.
        assert len(payloads) - queue.length() <= row_count(clean_db)

    workers.start(**knobs)
    wait_for(lambda: drained(redis_client), "the stream to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert redis_client.xlen(KEYS.dead) == 0


def test_a_store_failure_on_batch_n_holds_n_and_n_plus_1_pending_until_both_are_stored(
    redis_url, clean_db
):
    # statement_timeout 1 s: an insert behind the lock fails as StoreUnavailable (57014).
    store = PostgresStore(clean_db, timeout=1)
    inserter = make_inserter(redis_url, store, start=BATCH)
    payloads = make_events(2 * BATCH)
    entry_ids = enqueue(inserter.queue, payloads)
    drain = Drain(inserter.queue, inserter, budget=120)
    client = inserter.queue.redis

    with TableLock(clean_db):
        started = time.monotonic()
        thread = threading.Thread(target=drain.run)
        thread.start()
        wait_for(lambda: inserter.status.failed_batches >= 4, "four failed attempts on N", 60)
        # Both batches read, neither stored nor acked.
        assert pending(client, inserter.consumer) == 2 * BATCH
        assert inserter.read_ahead  # N+1 is decoded and waiting
        held = client.xpending_range(KEYS.stream, GROUP, "-", "+", 10 * BATCH)
        held_for_ms = (time.monotonic() - started) * 1000
        assert row_count(clean_db) == 0
    thread.join(60)
    assert not thread.is_alive()

    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert drained(client)
    # N+1's lease was renewed with N's on every retry: never idle since it was read, never
    # redelivered (so an outage does not count deliveries towards the dead-letter stream).
    assert len(held) == 2 * BATCH
    assert all(p["times_delivered"] == 1 for p in held)
    assert max(p["time_since_delivered"] for p in held) < held_for_ms / 2
    assert totals(client)["inserted"] == 2 * BATCH
    store.close()


def test_sigterm_mid_pipeline_finishes_both_batches_and_acks_only_what_committed(
    workers, queue, redis_client, clean_db
):
    payloads = make_events(10 * BATCH)
    entry_ids = enqueue(queue, payloads)
    with TableLock(clean_db):
        proc = workers.start(**FIXED)
        consumer = in_flight_and_read_ahead(workers, redis_client, clean_db, proc)
        proc.send_signal(signal.SIGTERM)
        wait_for(
            lambda: (b := heartbeat_of(redis_client, proc)) and b["state"] == "stopping",
            "the worker to be stopping",
            30,
            workers.logs,
        )
        assert queue.length() == 10 * BATCH  # nothing committed, nothing acked
    # The lock is gone: the batch in flight commits and the one read ahead is stored too.
    assert workers.wait_exit(proc, timeout=60) == 0
    assert pending(redis_client, consumer) == 0
    assert row_count(clean_db) == 2 * BATCH
    assert queue.length() == 8 * BATCH  # no more read after the signal

    workers.start()
    wait_for(lambda: drained(redis_client), "the rest to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))


def test_sigterm_mid_pipeline_with_the_store_stuck_acks_nothing_and_leaves_both_pending(
    workers, queue, redis_client, clean_db
):
    payloads = make_events(10 * BATCH)
    entry_ids = enqueue(queue, payloads)
    knobs = {**FIXED, "claim_timeout": 2, "shutdown_grace": 2, "store_timeout": 120}
    with TableLock(clean_db):
        proc = workers.start(**knobs)
        consumer = in_flight_and_read_ahead(workers, redis_client, clean_db, proc)
        proc.send_signal(signal.SIGTERM)
        assert workers.wait_exit(proc, timeout=60) == EXIT_FORCED
        assert pending(redis_client, consumer) == 2 * BATCH  # left for reclaim, not lost
        assert queue.length() == 10 * BATCH
    assert row_count(clean_db) == 0

    workers.start(**knobs)
    wait_for(lambda: drained(redis_client), "the rest to drain", 120, workers.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))


# --- acks sent while the next batch is written ----------------------------------------------


class AckWatchingStore(PostgresStore):
    """The real Postgres store. Once the first batch is committed it pauses Redis writes for
    a second (CLIENT PAUSE WRITE), so that batch's acks take that long; the second insert
    records whether it started before those acks landed and whether they land while it runs."""

    def __init__(self, dsn):
        super().__init__(dsn, timeout=10)
        self.client, self.first_batch = None, set()  # set once the entries are there
        self.inserts = 0
        self.second_started_before_acks: bool | None = None
        self.acked_during_second: bool | None = None

    def insert_rows(self, rows):
        return self._watched(super().insert_rows, rows)

    def insert_encoded(self, encoded):  # the drain's batches, made ahead
        return self._watched(super().insert_encoded, encoded)

    def _watched(self, insert, batch):
        self.inserts += 1
        if self.inserts == 2:
            self.second_started_before_acks = not self.first_batch_acked()
            self.acked_during_second = polled(self.first_batch_acked)
        inserted = insert(batch)
        if self.inserts == 1:
            self.client.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
        return inserted

    def first_batch_acked(self) -> bool:
        held = self.client.xpending_range(KEYS.stream, GROUP, "-", "+", 10 * BATCH)
        return not self.first_batch & {p["message_id"].decode() for p in held}


def polled(condition, seconds=30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_batch_n_is_acked_while_n_plus_1_is_written_and_the_run_ends_with_all_acked(
    redis_url, clean_db
):
    store = AckWatchingStore(clean_db)
    inserter = make_inserter(redis_url, store, start=BATCH, minimum=BATCH)
    client = store.client = inserter.queue.redis
    payloads = make_events(3 * BATCH)
    entry_ids = enqueue(inserter.queue, payloads)
    store.first_batch = set(entry_ids[:BATCH])

    Drain(inserter.queue, inserter, budget=120).run()

    # Batch 2's insert did not wait for batch 1's acks, and they landed while it ran.
    assert store.second_started_before_acks is True
    assert store.acked_during_second is True
    # And the run returned only once every ack was sent.
    assert pending(client, inserter.consumer) == 0
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert totals(client)["inserted"] == 3 * BATCH
    store.close()


def test_reclaim_waits_for_the_acks_the_drain_has_in_flight(redis_url, clean_db):
    store = PostgresStore(clean_db)
    inserter = make_inserter(redis_url, store, start=BATCH)
    client = inserter.queue.redis
    payloads = make_events(BATCH)
    entry_ids = enqueue(inserter.queue, payloads)
    # The acks are queued behind a task that waits for the gate: committed, not yet acked.
    gate = threading.Event()
    acks = ThreadPoolExecutor(1)
    acks.submit(gate.wait, 60)
    with inserter.lock:
        entries = inserter.queue.read(inserter.consumer, BATCH)
        inserter.store_decoded(inserter.decode_batch(entries), False, acks)
    assert row_count(clean_db) == BATCH and pending(client, inserter.consumer) == BATCH

    # With no idle time required, the entries would be claimed at once and stored again.
    reclaim = Reclaim(inserter.queue, inserter, claim_timeout=0, max_deliveries=5)
    thread = threading.Thread(target=reclaim.run)
    thread.start()
    thread.join(1)
    assert thread.is_alive()  # waiting for the drain's acks, not claiming the entries
    gate.set()
    thread.join(30)
    assert not thread.is_alive()

    counts = totals(client)
    assert counts.get("reclaimed", 0) == 0 and counts.get("duplicates", 0) == 0
    assert pending(client) == 0
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    acks.shutdown()
    store.close()


class Counting:
    """Mixed into a real store: counts which insert each batch took."""

    made_ahead = encoded_here = 0

    def insert_encoded(self, encoded):
        self.made_ahead += 1
        return super().insert_encoded(encoded)

    def insert_rows(self, rows):
        self.encoded_here += 1
        return super().insert_rows(rows)


class CountingPostgresStore(Counting, PostgresStore):
    pass


class CountingSupabaseStore(Counting, SupabaseStore):
    pass


@pytest.fixture(params=["postgres", "supabase"])
def counting_store(request, clean_db, postgrest):
    """Makes the real store, counting (a timeout in seconds as argument)."""
    if request.param == "postgres":
        return lambda timeout: CountingPostgresStore(clean_db, timeout=timeout)
    return lambda timeout: CountingSupabaseStore(
        postgrest.url, postgrest.service_key, timeout=timeout
    )


def test_each_batch_is_sent_as_encoded_ahead(redis_url, clean_db, counting_store):
    store = counting_store(10)
    inserter = make_inserter(redis_url, store, start=BATCH, minimum=BATCH)
    payloads = make_events(5 * BATCH)
    entry_ids = enqueue(inserter.queue, payloads)

    Drain(inserter.queue, inserter, budget=120).run()

    assert store.encoded_here == 0
    assert store.made_ahead == totals(inserter.queue.redis)["batches"] >= 2
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert drained(inserter.queue.redis)
    store.close()


def test_a_batch_encoded_ahead_that_fails_is_retried_and_stored_once(
    redis_url, clean_db, counting_store
):
    # A 1 s timeout: the insert behind the lock times out (StoreUnavailable) until released.
    store = counting_store(1)
    inserter = make_inserter(redis_url, store, start=BATCH, minimum=10)
    payloads = make_events(2 * BATCH)
    entry_ids = enqueue(inserter.queue, payloads)
    drain = Drain(inserter.queue, inserter, budget=120)

    with TableLock(clean_db):
        thread = threading.Thread(target=drain.run)
        thread.start()
        wait_for(lambda: inserter.status.failed_batches >= 2, "two failed attempts", 60)
        assert row_count(clean_db) == 0
    thread.join(60)
    assert not thread.is_alive()

    # The first attempt went as made ahead; after a failure the size shrank and the batch
    # went in smaller parts, each encoded as it was sent.
    assert store.made_ahead >= 1 and store.encoded_here >= 2
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert drained(inserter.queue.redis)
    store.close()
