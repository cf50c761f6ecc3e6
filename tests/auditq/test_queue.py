"""The enqueue script and the queue's read side, against a real Redis."""

import json
import random

from auditq.keys import GROUP, Keys
from auditq.queue import ENQUEUE_LUA, TRUNCATED_KEEP, Queue, connect
from auditq.shards import queue_depth
from auditq.stats import Stats


def make_queue(redis_url, max_len=1000):
    return Queue(connect(redis_url), Keys("audit"), max_len)


def test_enqueue_adds_one_entry_per_event_with_an_event_field(redis_url):
    queue = make_queue(redis_url)
    ids = queue.enqueue([("normal", json.dumps({"action": "a"})), ("critical", '{"action":"b"}')])
    assert all(ids)
    entries = queue.redis.xrange("audit:events")
    assert [json.loads(fields[b"event"])["action"] for _, fields in entries] == ["a", "b"]
    assert Stats(queue.redis, queue.keys).totals() == {"enqueued": 2, "enqueued_critical": 1}


def test_the_bound_drops_normal_events_and_counts_them(redis_url):
    queue = make_queue(redis_url, max_len=3)
    ids = queue.enqueue([("normal", '{"action":"a"}')] * 5)
    assert [bool(i) for i in ids] == [True, True, True, False, False]
    assert queue.length() == 3
    totals = Stats(queue.redis, queue.keys).totals()
    assert totals["dropped_queue_full"] == 2


def test_reject_mode_reports_full_without_counting_a_drop(redis_url):
    queue = make_queue(redis_url, max_len=1)
    assert queue.enqueue([("normal", "{}"), ("normal", "{}")], on_full="reject")[1] is None
    assert "dropped_queue_full" not in Stats(queue.redis, queue.keys).totals()


def test_critical_events_pass_the_bound(redis_url):
    queue = make_queue(redis_url, max_len=1)
    ids = queue.enqueue([("normal", "{}"), ("critical", "{}"), ("critical", "{}")])
    assert all(ids)
    assert queue.length() == 3


def test_a_prefix_with_a_hash_tag_keeps_every_key_in_one_slot():
    keys = Keys("{audit}")
    names = [keys.stream, keys.dead, keys.counters, keys.minute(1), keys.workers, keys.worker("w")]
    assert all(name.startswith("{audit}:") for name in names)


def test_the_script_is_shipped_as_a_file_other_languages_can_load(redis_url):
    client = connect(redis_url)
    sha = client.script_load(ENQUEUE_LUA)
    keys = ["audit:events", "audit:counters", "audit:stats:1"]
    reply = client.evalsha(sha, 3, *keys, 10, "drop", 60, "normal", '{"action":"from.node"}')
    assert len(reply) == 1 and reply[0]
    assert client.xlen("audit:events") == 1


def test_consumer_side_reads_acks_and_deletes(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    queue.ensure_group()  # idempotent
    queue.enqueue([("normal", '{"action":"a"}')] * 3)
    entries = queue.read("w1", count=10)
    assert len(entries) == 3
    assert queue_depth(queue.redis, queue.keys, 1).lag >= 0
    queue.ack([e.id for e in entries[:2]])
    assert queue.length() == 1


def test_an_ack_forgets_the_failures_noted_for_the_entries_it_names(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    queue.enqueue([("normal", '{"action":"a"}')] * 3)
    first, second, third = [e.id for e in queue.read("w1", count=10)]
    queue.remember_failure([first, second, third], "postgres 57014: timeout")
    queue.ack([first, second], noted=[second])
    assert set(queue.first_failures([first, second, third])) == {first, third}
    queue.ack([third])  # none named: all of them
    assert set(queue.first_failures([first, second, third])) == {first}
    assert queue.length() == 0


# --- acks: the entries leave the stream with them (lua/ack.lua) -------------------------


def in_stream(queue: Queue) -> list[str]:
    return [eid.decode() for eid, _ in queue.redis.xrange(queue.keys.stream)]


def pending(queue: Queue) -> list[str]:
    held = queue.redis.xpending_range(queue.keys.stream, GROUP, "-", "+", 1000)
    return [p["message_id"].decode() for p in held]


def test_an_ack_behind_an_older_batch_still_pending_removes_its_entries_only(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    ids = queue.enqueue([("normal", '{"action":"a"}')] * 10)
    older = [e.id for e in queue.read("w1", count=3)]  # w1 is still storing these
    newer = [e.id for e in queue.read("w2", count=3)]
    queue.ack(newer)
    assert in_stream(queue) == ids[:3] + ids[6:]
    assert pending(queue) == older == ids[:3]
    queue.ack(older)
    assert in_stream(queue) == ids[6:] and pending(queue) == []
    # The four never delivered are still there, and delivered next.
    rest = [e.id for e in queue.read("w1", count=10)]
    assert rest == ids[6:]
    queue.ack(rest[:2])
    assert in_stream(queue) == ids[8:]


def test_acking_an_entry_twice_or_one_not_delivered_removes_nothing_more(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    ids = queue.enqueue([("normal", '{"action":"a"}')] * 3)
    first = queue.read("w1", count=1)[0].id
    queue.ack([first])
    queue.ack([first])
    queue.ack([ids[2]])  # never delivered: stays, to be delivered
    assert in_stream(queue) == ids[1:]
    assert [e.id for e in queue.read("w1", count=10)] == ids[1:]


def test_the_stream_holds_exactly_the_entries_not_acked_whatever_the_order(redis_url):
    # Three workers read, take over each other's entries and ack parts of what they hold,
    # in a random order: after every step the stream is every entry not acked, no fewer.
    rng = random.Random(15)
    queue = make_queue(redis_url)
    queue.ensure_group()
    ids = queue.enqueue([("normal", '{"action":"a"}')] * 300)
    held: dict[str, list[str]] = {"w1": [], "w2": [], "w3": []}
    acked: set[str] = set()
    for _ in range(300):
        worker = rng.choice(list(held))
        step = rng.random()
        if step < 0.4:
            held[worker] += [e.id for e in queue.read(worker, count=rng.randint(1, 12))]
        elif step < 0.5:
            for entry in queue.reclaim(worker, min_idle_ms=0, count=rng.randint(1, 8)):
                for ids_held in held.values():
                    if entry.id in ids_held:
                        ids_held.remove(entry.id)
                held[worker].append(entry.id)
        elif held[worker]:
            part = rng.sample(held[worker], rng.randint(1, len(held[worker])))
            queue.ack(part)
            acked.update(part)
            held[worker] = [i for i in held[worker] if i not in acked]
        assert in_stream(queue) == [i for i in ids if i not in acked]
        assert sorted(pending(queue), key=ids.index) == sorted(
            (i for ids_held in held.values() for i in ids_held), key=ids.index
        )
    assert len(acked) > 150


def test_reclaim_hands_idle_entries_over_with_delivery_counts(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    queue.enqueue([("normal", '{"action":"a"}')] * 2)
    held = queue.read("dead-worker", count=10)
    taken = queue.reclaim("live-worker", min_idle_ms=0, count=10)
    assert [e.id for e in taken] == [e.id for e in held]
    assert all(e.deliveries == 2 for e in taken)


def test_dead_letter_moves_the_entry_with_its_reason(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    queue.enqueue([("normal", "{bad json")])
    (entry,) = queue.read("w1", count=10)
    queue.dead_letter([(entry, "event: is not valid JSON")], max_bytes=1024)
    assert queue.length() == 0
    (_, fields), *_ = queue.redis.xrange("audit:dead")
    assert fields[b"event"] == b"{bad json"
    assert fields[b"reason"] == b"event: is not valid JSON"
    assert fields[b"entry_id"].decode() == entry.id
    assert queue.redis.xlen("audit:dead") == 1


def test_an_oversized_dead_event_is_kept_truncated_with_its_size(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    blob = '{"action":"a","metadata":{"blob":"' + "x" * 10_000_000 + '"}}'
    queue.enqueue([("normal", blob)])
    (entry,) = queue.read("w1", count=10)
    queue.dead_letter(
        [(entry, "event: is 10000035 bytes, over the 65536-byte limit")], max_bytes=65_536
    )
    (_, fields), *_ = queue.redis.xrange("audit:dead")
    assert fields[b"event"] == blob[:TRUNCATED_KEEP].encode()
    assert int(fields[b"event_bytes"]) == len(blob) and fields[b"truncated"] == b"1"
    assert queue.length() == 0


def test_a_remembered_failure_keeps_its_first_reason_until_the_entry_is_acked(redis_url):
    queue = make_queue(redis_url)
    queue.ensure_group()
    queue.enqueue([("normal", '{"action":"a"}')] * 2)
    first, second = queue.read("w1", count=10)
    queue.remember_failure([first.id], "RuntimeError: the first")
    queue.remember_failure([first.id, second.id], "RuntimeError: a later one")
    assert queue.first_failures([first.id, second.id]) == {
        first.id: "RuntimeError: the first",
        second.id: "RuntimeError: a later one",
    }
    queue.ack([first.id])
    assert queue.first_failures([first.id, second.id]) == {second.id: "RuntimeError: a later one"}
