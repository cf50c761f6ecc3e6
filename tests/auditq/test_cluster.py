"""Producers on a real three-master Redis Cluster (tests/conftest.py ``redis_cluster``), and
the shard keys and choice that make the queue spread over it (AUDITQ_SHARDS)."""

import asyncio
import json

import pytest
import redis
import redis.asyncio

from auditq.async_client import AsyncAuditClient
from auditq.client import AuditClient
from auditq.config import ConfigError, load_settings
from auditq.devtools.embedded import free_port
from auditq.keys import Keys, hash_tag, shard_keys, shard_prefix
from auditq.producer import Spill, tenant_shard
from auditq.queue import connect, connect_async
from auditq.shards import last_two_minutes, queue_depth, record_shards, shard_count
from auditq.stats import Stats, epoch_minute

PREFIX = "{audit}"


def stream_events(client: redis.Redis, keys: Keys) -> list[dict]:
    return [json.loads(f[b"event"]) for _, f in client.xrange(keys.stream)]


def master_of(client: redis.RedisCluster, key: str) -> str:
    return client.get_node_from_key(key).name


# --- keys and choice (pure) ------------------------------------------------------------------


def test_one_shard_keeps_todays_keys_and_each_other_shard_has_its_own_tag():
    assert [k.stream for k in shard_keys("audit", 1)] == ["audit:events"]
    assert shard_prefix("audit", 2) == "audit:{2}"
    assert shard_prefix("{audit}", 2) == "{audit:2}"
    assert shard_prefix("x{a}y", 1) == "x{a:1}y"
    tags = [hash_tag(k.stream) for k in shard_keys(PREFIX, 6)]
    assert len(set(tags)) == 6
    for keys in shard_keys(PREFIX, 6):  # everything the enqueue script touches: one tag
        assert {hash_tag(keys.stream), hash_tag(keys.counters), hash_tag(keys.minute(1))} == {
            hash_tag(keys.dead)
        }


@pytest.mark.parametrize("prefix", ["a{}b", "{a}{b}", "a}", "{a"])
def test_a_prefix_with_braces_other_than_one_hash_tag_is_refused(prefix):
    with pytest.raises(ConfigError, match="AUDITQ_PREFIX"):
        load_settings(prefix=prefix)


def test_an_event_spills_to_the_next_shards_before_the_policy_applies():
    spill = Spill([2, 2, 0], shards=3, on_full="drop")
    assert spill.calls() == [(2, [0, 1], "reject"), (0, [2], "reject")]
    spill.record([0, 1], ["1-1", None])
    spill.record([2], ["1-2"])
    assert spill.calls() == [(0, [1], "reject")]  # the next shard after 2
    spill.record([1], [None])
    assert spill.calls() == [(1, [1], "drop")]  # the last one: only now may it drop
    spill.record([1], [None])
    assert spill.calls() == []
    assert spill.ids == ["1-1", None, "1-2"]
    one = Spill([0], shards=1, on_full="drop")
    assert one.calls() == [(0, [0], "drop")]


# --- cluster detection -----------------------------------------------------------------------


def test_any_node_of_a_cluster_gives_a_cluster_client_and_a_single_node_a_plain_one(
    redis_cluster, cluster_url, redis_url
):
    for node in redis_cluster.nodes:
        client = connect(node.url, timeout=1.0)
        assert isinstance(client, redis.RedisCluster)
        assert len(client.get_primaries()) == 3
        client.close()
    plain = connect(redis_url)
    assert type(plain) is redis.Redis
    assert isinstance(connect_async(cluster_url, timeout=1.0), redis.asyncio.RedisCluster)
    assert type(connect_async(redis_url)) is redis.asyncio.Redis
    # Nothing answering: a plain client, so a producer still starts (and fails fast per call).
    assert type(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)) is redis.Redis


def test_a_prefix_without_a_hash_tag_is_refused_on_a_cluster_only(cluster_url, redis_url):
    with pytest.raises(ConfigError, match="AUDITQ_PREFIX"):
        AuditClient(load_settings(redis_url=cluster_url, prefix="audit"))
    with pytest.raises(ConfigError, match="AUDITQ_PREFIX"):
        AsyncAuditClient(load_settings(redis_url=cluster_url, prefix="audit"))
    AuditClient(load_settings(redis_url=redis_url, prefix="audit")).close()


# --- producers on the cluster ----------------------------------------------------------------


def test_events_spread_over_the_masters_and_a_tenant_stays_on_its_shard(cluster_url):
    client = AuditClient(load_settings(redis_url=cluster_url, prefix=PREFIX, shards=3))
    for i in range(60):
        assert client.log("user.login", actor_id=f"u_{i}").outcome == "queued"
    for i in range(30):
        client.log("doc.edit", tenant_id="acme", metadata={"n": i})
    raw = client.redis
    shards = shard_keys(PREFIX, 3)
    per_shard = [stream_events(raw, keys) for keys in shards]
    assert sum(len(events) for events in per_shard) == 90
    assert all(len(events) >= 20 for events in per_shard)  # 60 untenanted, by turns
    acme = tenant_shard("acme", 3)
    assert [e["metadata"]["n"] for e in per_shard[acme] if e.get("tenant_id")] == list(range(30))
    assert len({master_of(raw, keys.stream) for keys in shards}) >= 2
    # Each shard counts its own events; together they are every event.
    counted = [int(raw.hget(keys.counters, "enqueued")) for keys in shards]
    assert counted == [len(events) for events in per_shard]
    assert client.stats.totals()["enqueued"] == 90  # read over the shards
    assert raw.get(Keys(PREFIX).shards) == b"3"  # recorded for the workers
    client.close()


def test_a_full_shard_spills_and_only_a_full_queue_drops(cluster_url):
    # AUDITQ_MAX_QUEUE=6 over 3 shards: 2 each; one tenant fills its shard, then the others.
    client = AuditClient(load_settings(redis_url=cluster_url, prefix=PREFIX, shards=3, max_queue=6))
    outcomes = [client.log("x", tenant_id="acme").outcome for _ in range(7)]
    assert outcomes == ["queued"] * 6 + ["dropped"]
    raw = client.redis
    assert [raw.xlen(keys.stream) for keys in shard_keys(PREFIX, 3)] == [2, 2, 2]
    dropped = sum(
        int(raw.hget(k.counters, "dropped_queue_full") or 0) for k in shard_keys(PREFIX, 3)
    )
    assert dropped == 1
    client.close()


def test_the_async_client_shards_the_same_way(cluster_url):
    settings = load_settings(redis_url=cluster_url, prefix=PREFIX, shards=3)

    async def main():
        async with AsyncAuditClient(settings) as client:
            results = await asyncio.gather(
                *[client.log("a", tenant_id=f"t{i % 5}", metadata={"n": i}) for i in range(50)]
            )
        return results

    assert {r.outcome for r in asyncio.run(main())} == {"queued"}
    raw = connect(cluster_url)
    per_shard = [stream_events(raw, keys) for keys in shard_keys(PREFIX, 3)]
    assert sum(len(events) for events in per_shard) == 50
    for shard, events in enumerate(per_shard):
        assert {tenant_shard(e["tenant_id"], 3) for e in events} <= {shard}
    raw.close()


def test_the_readers_sum_every_shard_ever_used(cluster_url):
    # Producers once used 6 shards, now 3: readers configured with 3 still see all 6.
    AuditClient(load_settings(redis_url=cluster_url, prefix=PREFIX, shards=6)).log_many(
        [{"action": "a", "tenant_id": f"t{i}"} for i in range(40)]
    )
    client = AuditClient(load_settings(redis_url=cluster_url, prefix=PREFIX, shards=3))
    client.log_many([{"action": "b"} for _ in range(10)])
    raw, keys = client.redis, Keys(PREFIX)
    assert record_shards(raw, keys, 3) == 6  # never lowered
    shards = shard_count(raw, keys, 3)
    assert shards == 6
    assert queue_depth(raw, keys, shards).length == 50
    current, previous = last_two_minutes(raw, keys, shards, epoch_minute())
    assert current.get("enqueued", 0) + previous.get("enqueued", 0) == 50
    assert Stats(raw, keys, shards).totals()["enqueued"] == 50
    client.close()
