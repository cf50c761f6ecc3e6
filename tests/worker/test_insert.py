"""One batch into the store: poison isolation, duplicates, transient failures, shutdown."""

import json
import random
import threading
import time

from auditq.keys import GROUP
from auditq.queue import Queue, connect
from auditq.stats import Stats
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore
from tests.polling import wait_for
from tests.worker.helpers import (
    KEYS,
    TableLock,
    assert_exactly_once,
    drained,
    enqueue,
    expected_ids,
    make_events,
    pending,
    row_count,
    totals,
)
from worker.batching import AdaptiveBatch
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter

CONSUMER_PID = 4242


def make_inserter(redis_url, store, *, start=500, minimum=10) -> BatchInserter:
    client = connect(redis_url)
    queue = Queue(client, KEYS, max_len=1_000_000)
    queue.ensure_group()
    sizer = AdaptiveBatch(
        start=start, minimum=minimum, maximum=5000, max_bytes=4_000_000, target_ms=500
    )
    status = WorkerStatus(stopping=threading.Event(), batch_size=sizer.size, pid=CONSUMER_PID)
    return BatchInserter(
        queue, Stats(client, KEYS), store, sizer, status,
        max_event_bytes=1024, retry_base=0.1, retry_max=0.5,
    )  # fmt: skip


def read_all(inserter: BatchInserter, count: int):
    return inserter.queue.read(inserter.consumer, count)


# --- poison ----------------------------------------------------------------------------


def poison(kind: str, i: int) -> dict[bytes, bytes]:
    """A stream entry's fields that no worker can store, of the given kind."""
    event = {"action": "user.login", "actor_id": f"p_{i}"}
    if kind == "bad_json":
        return {b"event": b'{"action": "user.login", '}
    if kind == "oversized":  # over AUDITQ_MAX_EVENT_BYTES=1024
        return {b"event": json.dumps(event | {"metadata": {"pad": "x" * 2000}}).encode()}
    if kind == "invalid_ip":
        return {b"event": json.dumps(event | {"ip": "999.1.1.1"}).encode()}
    if kind == "db_refuses":
        # Valid to the Python model, refused by Postgres: inet has no IPv6 zone index.
        return {b"event": json.dumps(event | {"ip": "fe80::1%eth0"}).encode()}
    if kind == "nul":
        # Valid to the Python model; text cannot hold NUL (psycopg refuses to send it).
        return {b"event": json.dumps(event | {"actor_id": f"p\u0000{i}"}).encode()}
    assert kind == "no_event_field"
    return {b"payload": json.dumps(event).encode()}


REASONS = {
    "bad_json": "event: is not valid JSON",
    "oversized": "over the 1024-byte limit",
    "invalid_ip": "ip: ",
    "db_refuses": "postgres 22P02: invalid input syntax for type inet",
    "nul": "postgres error: PostgreSQL text fields cannot contain NUL",
    "no_event_field": "no 'event' field",
}


def test_100_poison_entries_among_10000_entries_are_dead_lettered_with_their_reasons(
    workers, redis_client, clean_db
):
    kinds = ["bad_json"] * 25 + ["oversized"] * 25 + ["invalid_ip"] * 20
    kinds += ["db_refuses"] * 8 + ["nul"] * 7 + ["no_event_field"] * 15
    good = make_events(9_900)
    plan = [("good", p) for p in good] + [(k, None) for k in kinds]
    random.Random(7).shuffle(plan)
    pipe = redis_client.pipeline(transaction=False)
    for i, (kind, payload) in enumerate(plan):
        pipe.xadd(KEYS.stream, {"event": payload} if kind == "good" else poison(kind, i))
    entry_ids = [eid.decode() for eid in pipe.execute()]
    kind_of = {eid: kind for eid, (kind, _) in zip(entry_ids, plan, strict=True)}

    workers.start(max_event_bytes=1024)
    wait_for(lambda: drained(redis_client), "the stream to drain", 120, workers.logs)

    good_ids = [eid for eid in entry_ids if kind_of[eid] == "good"]
    assert_exactly_once(clean_db, expected_ids(good_ids, good_payloads(plan)))
    dead = redis_client.xrange(KEYS.dead)
    assert len(dead) == 100
    for _, fields in dead:
        kind = kind_of[fields[b"entry_id"].decode()]
        assert kind != "good"
        assert REASONS[kind] in fields[b"reason"].decode(), (kind, fields[b"reason"])
        assert fields[b"deliveries"] == b"1"
        assert fields[b"event"]  # kept for inspection and requeue
    counters = totals(redis_client)
    assert counters["inserted"] == 9_900 and counters["dead_lettered"] == 100


def good_payloads(plan):
    return [payload for kind, payload in plan if kind == "good"]


def test_the_supabase_store_isolates_refused_rows_too(redis_url, clean_db, postgrest):
    store = SupabaseStore(postgrest.url, postgrest.service_key, timeout=10)
    inserter = make_inserter(redis_url, store)
    payloads = make_events(40)
    payloads[7] = json.dumps({"action": "a", "actor_id": "nul\u0000here"})
    payloads[30] = json.dumps({"action": "a", "metadata": {"k": "nul\u0000"}})
    entry_ids = enqueue(inserter.queue, payloads)
    with inserter.lock:
        inserter.handle(read_all(inserter, 100), backlog=False)
    keep = [i for i in range(40) if i not in (7, 30)]
    expected = expected_ids([entry_ids[i] for i in keep], [payloads[i] for i in keep])
    assert_exactly_once(clean_db, expected)
    reasons = [f[b"reason"].decode() for _, f in inserter.queue.redis.xrange(KEYS.dead)]
    assert len(reasons) == 2 and all(r.startswith("postgrest 22") for r in reasons), reasons
    assert drained(inserter.queue.redis)
    store.close()


# --- duplicates ------------------------------------------------------------------------


def test_a_redelivered_batch_is_counted_as_duplicates_not_stored_twice(redis_url, clean_db):
    store = PostgresStore(clean_db, timeout=10)
    inserter = make_inserter(redis_url, store)
    payloads = make_events(300)
    entry_ids = enqueue(inserter.queue, payloads)
    entries = read_all(inserter, 1000)
    with inserter.lock:
        inserter.handle(entries, backlog=False)
        inserter.handle(entries, backlog=False)  # as if the first ack had been lost
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    counters = totals(inserter.queue.redis)
    assert counters["inserted"] == 300 and counters["duplicates"] == 300
    assert counters["batches"] == 2
    assert sum(v for k, v in counters.items() if k.startswith("lat_le_")) == 2
    assert counters["batch_latency_ms_sum"] >= 0
    store.close()


# --- transient failures ----------------------------------------------------------------


def test_a_store_timeout_is_retried_with_the_lease_kept_and_the_size_shrunk(redis_url, clean_db):
    # statement_timeout 1 s: an insert behind the lock fails as StoreUnavailable (57014).
    store = PostgresStore(clean_db, timeout=1)
    inserter = make_inserter(redis_url, store)
    payloads = make_events(200)
    entry_ids = enqueue(inserter.queue, payloads)
    entries = read_all(inserter, 1000)
    read_at = time.monotonic()

    def run():
        with inserter.lock:
            inserter.handle(entries, backlog=True)

    with TableLock(clean_db):
        worker = threading.Thread(target=run)
        worker.start()
        # Several failed attempts, each renewing the lease on the batch.
        wait_for(lambda: inserter.status.failed_batches >= 3, "three failed attempts", 60)
        wait_for(lambda: inserter.status.busy == "backoff", "the backoff state", 30)
        held = inserter.queue.redis.xpending_range(KEYS.stream, GROUP, "-", "+", 1000)
        held_for_ms = (time.monotonic() - read_at) * 1000
    worker.join(60)
    assert not worker.is_alive()

    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert drained(inserter.queue.redis)
    # Renewed, not redelivered: idle time reset, delivery count untouched.
    assert all(p["times_delivered"] == 1 for p in held)
    assert max(p["time_since_delivered"] for p in held) < held_for_ms
    assert inserter.sizer.size < 500
    assert inserter.status.retried >= 3
    counters = totals(inserter.queue.redis)
    assert counters["failed_batches"] >= 3 and counters["retried"] >= 3
    assert counters["inserted"] == 200 and counters["batches"] == 1
    store.close()


def test_shutdown_during_backoff_leaves_the_batch_pending(redis_url, clean_db):
    store = PostgresStore(clean_db, timeout=1)
    inserter = make_inserter(redis_url, store)
    enqueue(inserter.queue, make_events(50))
    entries = read_all(inserter, 100)

    def run():
        with inserter.lock:
            inserter.handle(entries, backlog=False)

    with TableLock(clean_db):
        worker = threading.Thread(target=run)
        worker.start()
        wait_for(lambda: inserter.status.busy == "backoff", "the backoff state", 30)
        inserter.status.stopping.set()
        worker.join(30)
        assert not worker.is_alive()
        assert inserter.status.state == "stopping"
    assert row_count(clean_db) == 0
    assert pending(inserter.queue.redis, inserter.consumer) == 50
    assert "batches" not in totals(inserter.queue.redis)
    store.close()
