"""How many shards exist, and reads that add them up (AUDITQ_SHARDS).

A process knows its own AUDITQ_SHARDS; Redis remembers the highest any process used
(``Keys.shards``). Workers drain, and readers sum, that many streams: a shard that a
lowered setting no longer feeds is still drained until empty (an empty stream costs one
short read per drain run), and a raised setting reaches workers that have not restarted.

Alerts, the dashboard and /metrics call ``shard_count`` and then read every shard through
``Stats(client, keys, shards=...)``, ``queue_depth`` and (alerts) ``last_two_minutes``.
"""

from __future__ import annotations

import redis
import redis.asyncio

from auditq.config import ConfigError
from auditq.keys import Keys, hash_tag, shard_keys
from auditq.producer import OnFull, ShardPicker, Spill, shard_bound
from auditq.queue import Depth, Queue, age_of_first
from auditq.stats import Stats

# Raise the stored count to ARGV[1] if that is higher; return what is stored then.
RECORD_LUA = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local shards = tonumber(ARGV[1])
if shards > stored then
  redis.call('SET', KEYS[1], shards)
  return shards
end
return stored
"""


def check_prefix(client: object, prefix: str) -> None:
    """On Redis Cluster every shard's keys must share a hash tag, or each enqueue fails
    with CROSSSLOT (and a producer would drop every event as "Redis unavailable")."""
    if isinstance(client, redis.RedisCluster | redis.asyncio.RedisCluster) and not hash_tag(prefix):
        raise ConfigError("AUDITQ_PREFIX: on Redis Cluster it needs a hash tag, e.g. {audit}")


def record_shards(client: redis.Redis, keys: Keys, shards: int) -> int:
    """Note that ``shards`` are in use; return the highest count ever used."""
    return int(client.eval(RECORD_LUA, 1, keys.shards, shards))


def shard_count(client: redis.Redis, keys: Keys, configured: int) -> int:
    """The shards to read: this process's setting or the highest ever used, if higher."""
    return max(configured, int(client.get(keys.shards) or 0))


def queue_depth(client: redis.Redis, keys: Keys, shards: int, now: float | None = None) -> Depth:
    """Queue length and dead letters summed over the shards; the lag of the oldest event
    in any of them. One pipelined round trip (a cluster client sends one per master)."""
    pipe = client.pipeline(transaction=False)
    for shard in shard_keys(keys.prefix, shards):
        pipe.xlen(shard.stream)
        pipe.xlen(shard.dead)
        pipe.xrange(shard.stream, count=1)
    replies = pipe.execute()
    lengths, deads, firsts = replies[0::3], replies[1::3], replies[2::3]
    lag = max(age_of_first(first, now) for first in firsts)
    return Depth(sum(lengths), sum(deads), lag, tuple(lengths), tuple(deads))


class ShardedQueue:
    """The producer's view of the queue: AUDITQ_SHARDS streams, each bounded by its share
    of AUDITQ_MAX_QUEUE; an event goes to its tenant's shard (else the call's turn) and
    spills to the next shards while its own is full (``auditq.producer.Spill``)."""

    def __init__(self, client: redis.Redis, prefix: str, shards: int, max_queue: int):
        check_prefix(client, prefix)
        self.redis = client
        self.keys = Keys(prefix)
        # Noted in Redis on the first enqueue, so workers drain every shard producers use.
        self._recorded = shards == 1
        bound = shard_bound(max_queue, shards)
        self.shards = [
            Queue(client, keys, bound, shard=i) for i, keys in enumerate(shard_keys(prefix, shards))
        ]
        self.picker = ShardPicker(shards)

    def enqueue(
        self, items: list[tuple[str, str]], tenants: list[str | None], on_full: OnFull = "drop"
    ) -> list[str | None]:
        """Like ``Queue.enqueue``; ``tenants`` (one per item) choose the shards."""
        spill = Spill(self.picker.pick(tenants), len(self.shards), on_full)
        while calls := spill.calls():
            for shard, indexes, mode in calls:
                picked = [items[i] for i in indexes]
                spill.record(indexes, self.shards[shard].enqueue(picked, mode))
        if not self._recorded:
            record_shards(self.redis, self.keys, len(self.shards))
            self._recorded = True
        return spill.ids


def last_two_minutes(
    client: redis.Redis, keys: Keys, shards: int, minute: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The counters of ``minute`` and the minute before, each summed over the shards: what
    the alert metrics weigh into "per minute" (``auditq.stats.window_weights``)."""
    stats = Stats(client, keys, shards)
    (_, previous), (_, current) = stats.series(2, now=(minute + 1) * 60 - 1)
    return current, previous
