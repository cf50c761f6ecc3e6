"""Workers on a real three-master Redis Cluster with AUDITQ_SHARDS: every shard drained,
nothing lost or stored twice through a SIGKILLed worker, a restarted master, or N raised
from 3 to 6 under load."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator

import pytest
import redis

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.decoding import derived_id
from auditq.keys import GROUP, Keys, shard_keys
from auditq.queue import Queue, connect
from auditq.shards import record_shards
from tests.polling import wait_for
from tests.worker.helpers import assert_exactly_once, make_events, row_count

PREFIX = "{audit}"


@pytest.fixture
def cluster(cluster_url: str) -> Iterator[redis.RedisCluster]:
    client = connect(cluster_url)
    yield client
    client.close()


def fill_shards(client: redis.RedisCluster, shards: int, per_shard: int) -> set[str]:
    """``per_shard`` events (half without an id) into each shard's stream, through the
    enqueue script; returns the row ids they must end up as."""
    expected: set[str] = set()
    for shard, keys in enumerate(shard_keys(PREFIX, shards)):
        queue = Queue(client, keys, max_len=10_000_000, shard=shard)
        payloads = make_events(per_shard, start=shard * per_shard)
        for i in range(0, per_shard, 2000):
            chunk = payloads[i : i + 2000]
            ids = queue.enqueue([("normal", p) for p in chunk])
            for entry_id, payload in zip(ids, chunk, strict=True):
                assert entry_id is not None
                given = json.loads(payload).get("id")
                expected.add(given or str(derived_id(entry_id, shard)))
    return expected


def all_drained(client: redis.RedisCluster, shards: int) -> bool:
    for keys in shard_keys(PREFIX, shards):
        if client.xlen(keys.stream) or client.xpending(keys.stream, GROUP)["pending"]:
            return False
    return True


def test_one_worker_drains_every_shard_and_ids_never_collide_across_shards(
    cluster_workers, cluster, clean_db
):
    # Entry ids repeat across streams; events without an id still get distinct row ids.
    expected = fill_shards(cluster, 3, 500)
    assert len({cluster.get_node_from_key(k.stream).name for k in shard_keys(PREFIX, 3)}) >= 2
    cluster_workers.start(prefix=PREFIX, shards=3)
    wait_for(lambda: all_drained(cluster, 3), "every shard drained", 120, cluster_workers.logs)
    assert_exactly_once(clean_db, expected)
    inserted = [int(cluster.hget(k.counters, "inserted") or 0) for k in shard_keys(PREFIX, 3)]
    assert inserted == [500, 500, 500]  # each shard counts its own


def test_sigkill_a_worker_mid_drain_and_every_event_lands_once(cluster_workers, cluster, clean_db):
    expected = fill_shards(cluster, 3, 6000)
    knobs = {"prefix": PREFIX, "shards": 3, "batch_start": 100, "batch_max": 200}
    first = cluster_workers.start(**knobs)
    wait_for(lambda: row_count(clean_db) > 500, "the first batches", 60, cluster_workers.logs)
    first.send_signal(signal.SIGKILL)
    cluster_workers.wait_exit(first, timeout=30)
    assert row_count(clean_db) < len(expected)  # it died in the middle of the backlog
    cluster_workers.start(**knobs, claim_timeout=2)
    wait_for(lambda: all_drained(cluster, 3), "the rest to drain", 180, cluster_workers.logs)
    assert_exactly_once(clean_db, expected)


def test_a_master_restarted_mid_drain_loses_nothing(
    cluster_workers, cluster, redis_cluster, clean_db
):
    expected = fill_shards(cluster, 3, 6000)
    knobs = {"prefix": PREFIX, "shards": 3, "batch_start": 100, "batch_max": 200}
    cluster_workers.start(**knobs, claim_timeout=3, store_timeout=1)
    wait_for(lambda: row_count(clean_db) > 500, "the first batches", 60, cluster_workers.logs)
    # The master holding shard 1: killed and started again on its append-only file.
    victim = cluster.get_node_from_key(shard_keys(PREFIX, 3)[1].stream).port
    redis_cluster.restart(next(i for i, n in enumerate(redis_cluster.nodes) if n.port == victim))
    assert row_count(clean_db) < len(expected)
    wait_for(lambda: all_drained(cluster, 3), "the rest to drain", 180, cluster_workers.logs)
    assert_exactly_once(clean_db, expected)


def test_shards_raised_from_3_to_6_under_load_lose_nothing(
    cluster_workers, cluster_url, cluster, clean_db
):
    # The workers keep AUDITQ_SHARDS=3: they learn of shards 3-5 from what producers record.
    cluster_workers.start(prefix=PREFIX, shards=3, batch_start=50)
    queued: list[str] = []

    def produce(shards: int, count: int) -> None:
        client = AuditClient(load_settings(redis_url=cluster_url, prefix=PREFIX, shards=shards))
        for i in range(count):
            result = client.log("user.login", actor_id=f"u_{i}", tenant_id=f"t{i % 50}")
            assert result.outcome == "queued"
            queued.append(result.id)
        client.close()

    produce(3, 1000)
    # A rolling deploy: producers still on 3 shards while new ones use 6, workers draining.
    rolling = [threading.Thread(target=produce, args=(n, 2000)) for n in (3, 6)]
    for thread in rolling:
        thread.start()
    for thread in rolling:
        thread.join(120)
    assert len(queued) == 5000
    assert int(cluster.get(Keys(PREFIX).shards)) == 6
    per_shard = [cluster.hget(k.counters, "enqueued") for k in shard_keys(PREFIX, 6)]
    assert all(int(n or 0) > 0 for n in per_shard[3:])  # the new shards got events
    wait_for(lambda: all_drained(cluster, 6), "all six shards drained", 180, cluster_workers.logs)
    assert_exactly_once(clean_db, set(queued))


def test_shards_lowered_from_6_to_3_are_drained_until_empty(cluster_workers, cluster, clean_db):
    # Producers used 6 shards (and said so); the worker is configured with 3.
    expected = fill_shards(cluster, 6, 300)
    record_shards(cluster, Keys(PREFIX), 6)
    cluster_workers.start(prefix=PREFIX, shards=3)
    wait_for(lambda: all_drained(cluster, 6), "all six shards drained", 120, cluster_workers.logs)
    assert_exactly_once(clean_db, expected)
