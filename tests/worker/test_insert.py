"""One batch into the store: poison isolation, duplicates, transient failures, shutdown."""

import json
import random
import threading
import time

import psycopg
import pytest

from auditq import decoding
from auditq.config import Settings
from auditq.events import COLUMN
from auditq.keys import GROUP
from auditq.pii.reader import reveal
from auditq.pii.writer import sealer
from auditq.stores import EventFilters, StoreUnavailable
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore
from tests.auditq.pii.helpers import KEY
from tests.polling import wait_for
from tests.worker.helpers import (
    KEYS,
    TableLock,
    assert_exactly_once,
    drained,
    enqueue,
    expected_ids,
    make_events,
    make_inserter,
    pending,
    row_count,
    totals,
)
from worker.insert import SEALED_PART, BatchInserter


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
        # Refused by Postgres (inet has no IPv6 zone index), so refused by decode already.
        return {b"event": json.dumps(event | {"ip": "fe80::1%eth0"}).encode()}
    if kind == "nul":
        # Text cannot hold NUL (psycopg refuses to send it), so decode refuses it.
        return {b"event": json.dumps(event | {"actor_id": f"p\u0000{i}"}).encode()}
    if kind == "out_of_range":
        # Year 0 once in UTC: an OverflowError that once held back every neighbour.
        return {b"event": json.dumps(event | {"occurred_at": OUT_OF_RANGE[i % 2]}).encode()}
    assert kind == "no_event_field"
    return {b"payload": json.dumps(event).encode()}


OUT_OF_RANGE = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
REASONS = {
    "bad_json": "event: is not valid JSON",
    "oversized": "over the 1024-byte limit",
    "invalid_ip": "ip: ",
    "db_refuses": "ip: must be an IPv4 or IPv6 address (no zone id)",
    "nul": "actor_id: must not contain NUL characters",
    "out_of_range": "occurred_at: is out of range once converted to UTC",
    "no_event_field": "no 'event' field",
}


def test_100_poison_entries_among_10000_entries_are_dead_lettered_with_their_reasons(
    workers, redis_client, clean_db
):
    kinds = ["bad_json"] * 20 + ["oversized"] * 25 + ["invalid_ip"] * 20 + ["out_of_range"] * 5
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


@pytest.fixture
def refused_action(clean_db):
    """Rows with action "refused" violate a CHECK constraint (23514) while it exists: the
    event model takes everything Postgres takes, so a refusal has to come from the table."""
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "alter table public.audit_logs add constraint test_refused check (action <> 'refused')"
        )
    yield "refused"
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("alter table public.audit_logs drop constraint test_refused")


@pytest.mark.parametrize(
    ("store_name", "says"), [("postgres", "postgres"), ("supabase", "postgrest")]
)
def test_rows_the_database_refuses_are_isolated_from_a_batch_made_ahead(
    redis_url, clean_db, postgrest, refused_action, store_name, says
):
    # The batch is one insert made ahead (``Store.encode_rows``); refused, it is bisected.
    if store_name == "postgres":
        store = PostgresStore(clean_db, timeout=10)
    else:
        store = SupabaseStore(postgrest.url, postgrest.service_key, timeout=10)
    inserter = make_inserter(redis_url, store)
    payloads = make_events(40)
    payloads[7] = json.dumps({"action": refused_action, "actor_id": "u_7"})
    payloads[30] = json.dumps({"action": refused_action, "metadata": {"k": 30}})
    entry_ids = enqueue(inserter.queue, payloads)
    with inserter.lock:
        inserter.handle(read_all(inserter, 100), backlog=False)
    keep = [i for i in range(40) if i not in (7, 30)]
    expected = expected_ids([entry_ids[i] for i in keep], [payloads[i] for i in keep])
    assert_exactly_once(clean_db, expected)
    reasons = [f[b"reason"].decode() for _, f in inserter.queue.redis.xrange(KEYS.dead)]
    assert len(reasons) == 2 and all(r.startswith(f"{says} 23514") for r in reasons)
    assert drained(inserter.queue.redis)
    store.close()


def test_one_out_of_range_timestamp_is_dead_lettered_alone_in_the_same_run(redis_url, clean_db):
    store = PostgresStore(clean_db, timeout=10)
    inserter = make_inserter(redis_url, store)
    client = inserter.queue.redis
    payloads = make_events(40)
    entry_ids = enqueue(inserter.queue, payloads[:20])
    bad = [client.xadd(KEYS.stream, poison("out_of_range", i)).decode() for i in range(2)]
    entry_ids += enqueue(inserter.queue, payloads[20:])
    # A producer may choose its own entry id; with no occurred_at its time is out of range.
    bad.append(client.xadd(KEYS.stream, {"event": '{"action": "a"}'}, id="18446744073709551614-0"))
    with inserter.lock:
        inserter.handle(read_all(inserter, 100), backlog=False)  # one batch, one run

    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))
    assert drained(client)
    dead = {f[b"entry_id"].decode(): f for _, f in client.xrange(KEYS.dead)}
    assert sorted(dead) == sorted(bad[:2] + [bad[2].decode()])
    assert all(f[b"deliveries"] == b"1" for f in dead.values())
    assert all(f[b"reason"].startswith(b"occurred_at: ") for f in dead.values())
    store.close()


def test_an_unexpected_error_while_decoding_one_entry_holds_back_no_other(
    redis_url, clean_db, monkeypatch
):
    store = PostgresStore(clean_db, timeout=10)
    inserter = make_inserter(redis_url, store)
    payloads = make_events(30)
    entry_ids = enqueue(inserter.queue, payloads)

    # A stand-in for an error of a type nobody foresaw (as OverflowError once was), raised
    # while decoding one entry of the batch.
    decode_one = decoding._decode

    def decode(entry_id, *args):
        if entry_id == entry_ids[11]:
            raise TypeError("nobody saw this coming")
        return decode_one(entry_id, *args)

    monkeypatch.setattr(decoding, "_decode", decode)
    with inserter.lock:
        inserter.handle(read_all(inserter, 100), backlog=False)

    assert_alone_dead(
        inserter, clean_db, entry_ids, payloads, 11, "TypeError: nobody saw this coming"
    )
    store.close()


def assert_alone_dead(inserter, dsn, entry_ids, payloads, index, reason):
    """The entry at ``index`` is dead-lettered with ``reason``; every other one is stored."""
    keep = [i for i in range(len(payloads)) if i != index]
    assert_exactly_once(
        dsn, expected_ids([entry_ids[i] for i in keep], [payloads[i] for i in keep])
    )
    ((_, fields),) = inserter.queue.redis.xrange(KEYS.dead)
    assert fields[b"entry_id"].decode() == entry_ids[index]
    assert fields[b"reason"].decode() == reason
    assert drained(inserter.queue.redis)


class BuggyStore(PostgresStore):
    """The real Postgres store, plus a client-side bug: any part holding a "boom" event
    raises a TypeError (neither DataRejected nor StoreUnavailable). Every batch goes
    through ``insert_rows``, where the bug is: none is made ahead."""

    def encode_rows(self, rows):
        return None

    def insert_rows(self, rows):
        if any(row[COLUMN["action"]] == "boom" for row in rows):
            raise TypeError("cannot adapt this row")
        return super().insert_rows(rows)


def test_an_unexpected_error_while_inserting_isolates_only_its_entry(redis_url, clean_db):
    store = BuggyStore(clean_db, timeout=10)
    inserter = make_inserter(redis_url, store)
    payloads = make_events(50)
    payloads[23] = json.dumps({"action": "boom"})
    entry_ids = enqueue(inserter.queue, payloads)
    with inserter.lock:
        inserter.handle(read_all(inserter, 100), backlog=False)

    assert_alone_dead(
        inserter, clean_db, entry_ids, payloads, 23, "TypeError: cannot adapt this row"
    )
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


# --- personal fields ------------------------------------------------------------------------


class KeysDownOnce(PostgresStore):
    """The real Postgres store, whose data keys cannot be read once: the ``fail_at``-th time
    they are asked for (the first: when the batch's first part is sealed ahead of its insert)."""

    def __init__(self, dsn, fail_at=1):
        super().__init__(dsn, timeout=10)
        self.asked = 0
        self.fail_at = fail_at
        self.failed = False

    def pii_keys(self, **which):
        self.asked += 1
        if self.asked == self.fail_at:
            self.failed = True
            raise StoreUnavailable("data keys unreadable")
        return super().pii_keys(**which)


def test_a_batch_that_could_not_be_sealed_ahead_is_sealed_at_its_insert(redis_url, clean_db):
    store = KeysDownOnce(clean_db)
    inserter = make_inserter(redis_url, store)
    inserter.seal = sealer(Settings(pii_key=KEY), store)
    payloads = [
        json.dumps({"action": "user.login", "actor_id": f"u_{i}", "ip": "198.51.100.23"})
        for i in range(20)
    ]
    enqueue(inserter.queue, payloads)
    with inserter.lock:
        inserter.handle(read_all(inserter, 100), backlog=False)

    assert store.failed
    with psycopg.connect(clean_db) as conn:
        rows = conn.execute("select ip, pii is not null from public.audit_logs").fetchall()
    assert rows == [(None, True)] * 20  # no address in clear, every row's ciphertext there
    assert drained(inserter.queue.redis)
    store.close()


def test_a_batch_whose_keys_fail_after_its_first_part_is_sealed_whole_at_its_insert(
    redis_url, clean_db
):
    """Sealed ahead a part at a time (``SEALED_PART``): the parts sealed before the key store
    failed keep their ciphertext, the others are sealed at the insert; no row in clear, none
    sealed twice."""
    store = KeysDownOnce(clean_db, fail_at=2)
    inserter = make_inserter(redis_url, store)
    settings = Settings(pii_key=KEY)
    inserter.seal = sealer(settings, store)
    count = SEALED_PART * 2 + 10
    payloads = [
        json.dumps({"action": "user.login", "actor_id": f"u_{i}", "ip": f"198.51.100.{i % 250}"})
        for i in range(count)
    ]
    enqueue(inserter.queue, payloads)
    with inserter.lock:
        inserter.handle(read_all(inserter, count), backlog=False)

    assert store.failed
    with psycopg.connect(clean_db) as conn:
        rows = conn.execute("select ip, pii is not null from public.audit_logs").fetchall()
    assert rows == [(None, True)] * count
    # Decrypted, a row of each part: sealed once, under its own subject's key.
    for i in (5, SEALED_PART + 5, SEALED_PART * 2 + 5):
        (row,) = store.query_events(EventFilters(actor_id=f"u_{i}"))
        reveal([row], store, settings, "clear")
        assert row["ip"] == f"198.51.100.{i % 250}"
    assert drained(inserter.queue.redis)
    store.close()
