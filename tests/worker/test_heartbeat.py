"""The heartbeat contract (what the dashboard and alerts read), against a real Redis."""

import threading
import time

from auditq.heartbeat import count_alive, list_workers
from auditq.keys import Keys
from worker.heartbeat import Heartbeat, WorkerStatus

KEYS = Keys("hb")
CONTRACT = {
    "id", "host", "pid", "started_at", "last_beat", "state", "batch_size", "last_latency_ms",
    "inserted", "failed_batches", "dead_lettered", "retried",
}  # fmt: skip


def status(pid: int = 101, **fields) -> WorkerStatus:
    return WorkerStatus(stopping=threading.Event(), batch_size=500, pid=pid, **fields)


def test_a_beat_writes_the_contract_fields_with_a_ttl_and_the_zset_score(redis_client):
    worker = status(inserted=7, busy="draining")
    Heartbeat(redis_client, KEYS, worker, ttl=30).beat()

    raw = redis_client.hgetall(KEYS.worker(worker.id))
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    assert set(fields) == CONTRACT
    assert fields["id"] == worker.id == f"{worker.host}:101"
    assert fields["state"] == "draining" and fields["inserted"] == "7"
    assert fields["batch_size"] == "500"
    assert 0 < redis_client.pttl(KEYS.worker(worker.id)) <= 30_000
    score = redis_client.zscore(KEYS.workers, worker.id)
    assert score == float(fields["last_beat"])


def test_the_state_reads_stopping_once_the_stop_event_is_set(redis_client):
    worker = status(busy="backoff")
    assert worker.state == "backoff"
    worker.stopping.set()
    Heartbeat(redis_client, KEYS, worker, ttl=30).beat()
    assert redis_client.hget(KEYS.worker(worker.id), "state") == b"stopping"


def test_a_clean_exit_removes_the_hash_and_the_member(redis_client):
    heartbeat = Heartbeat(redis_client, KEYS, status(), ttl=30)
    heartbeat.beat()
    heartbeat.remove()
    assert redis_client.exists(KEYS.worker(heartbeat.status.id)) == 0
    assert redis_client.zcard(KEYS.workers) == 0
    assert list_workers(redis_client, KEYS) == []


def test_list_workers_reports_alive_and_stale_with_their_age(redis_client):
    now = time.time()
    alive = Heartbeat(redis_client, KEYS, status(pid=1, inserted=3), ttl=30)
    alive.beat()
    silent = Heartbeat(redis_client, KEYS, status(pid=2), ttl=30)
    silent.beat()
    redis_client.zadd(KEYS.workers, {silent.status.id: now - 60})  # beat a minute ago...
    redis_client.hset(KEYS.worker(silent.status.id), "last_beat", now - 60)
    killed = status(pid=3)  # ...and a SIGKILLed worker whose hash has expired
    redis_client.zadd(KEYS.workers, {killed.id: now - 120})

    workers = list_workers(redis_client, KEYS, now=now + 1, ttl=30)
    by_pid = {w["pid"]: w for w in workers if w["pid"]}
    assert [w["status"] for w in workers] == ["alive", "stale", "stale"]  # newest first
    assert by_pid[1]["inserted"] == 3 and by_pid[1]["state"] == "idle"
    assert 0 <= by_pid[1]["age"] < 30
    assert 60 <= by_pid[2]["age"] < 62
    expired = workers[2]
    assert expired["id"] == killed.id and expired["state"] is None
    assert 120 <= expired["age"] < 122
    assert set(expired) == CONTRACT | {"age", "status"}


def test_list_workers_is_bounded_and_old_members_are_pruned(redis_client):
    now = time.time()
    redis_client.zadd(KEYS.workers, {f"gone:{i}": now - 10 for i in range(150)})
    redis_client.zadd(KEYS.workers, {"ancient:1": now - 600 - 10})
    assert len(list_workers(redis_client, KEYS)) == 100
    assert len(list_workers(redis_client, KEYS, limit=5)) == 5
    Heartbeat(redis_client, KEYS, status(), ttl=30, forget_after=600).beat()
    assert redis_client.zscore(KEYS.workers, "ancient:1") is None
    assert redis_client.zcard(KEYS.workers) == 151


def test_count_alive_agrees_with_list_workers_on_a_client_and_in_a_pipeline(redis_client):
    now = time.time()
    for pid in (1, 2):
        Heartbeat(redis_client, KEYS, status(pid=pid), ttl=30).beat()
    redis_client.zadd(KEYS.workers, {"killed:3": now - 31})  # silent longer than the ttl

    listed = list_workers(redis_client, KEYS, now=now + 1, ttl=30)
    assert sum(w["status"] == "alive" for w in listed) == 2
    assert count_alive(redis_client, KEYS, ttl=30, now=now + 1) == 2
    pipe = redis_client.pipeline(transaction=False)
    count_alive(pipe, KEYS, ttl=30, now=now + 1)
    assert pipe.execute() == [2]
    # Once the ttl has passed since their beats, none is alive by either reading.
    assert count_alive(redis_client, KEYS, ttl=30, now=now + 40) == 0
    assert {w["status"] for w in list_workers(redis_client, KEYS, now=now + 40, ttl=30)} == {
        "stale"
    }
