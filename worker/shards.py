"""The worker over every shard (AUDITQ_SHARDS): one Queue, BatchInserter, Drain and Reclaim
per stream, driven by the scheduler's drain and reclaim jobs in turn.

A thin layer: each shard's drain, reclaim and dead letters are the single-stream ones, on
that shard's keys (its own consumer group, pending entries, dead-letter stream and
counters). Fair: a drain run gives each shard an equal share of AUDITQ_DRAIN_BUDGET and
starts one shard further along each time, so a backlog in one shard cannot starve another.
Safe when N changes: the shard count is the highest any process recorded in Redis
(``auditq.shards``), checked on every drain run, so a shard nobody feeds any more is still
drained until empty, and one a producer started using is picked up without a restart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from auditq.config import Settings
from auditq.keys import Keys, shard_keys
from auditq.pii.writer import sealer
from auditq.producer import shard_bound
from auditq.queue import Queue
from auditq.shards import check_prefix, record_shards, shard_count
from auditq.stats import Stats
from auditq.stores import Store
from worker.batching import AdaptiveBatch
from worker.drain import Drain
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter
from worker.reclaim import Reclaim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    queue: Queue
    drain: Drain
    reclaim: Reclaim


class Shards:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        store: Store,
        sizer: AdaptiveBatch,
        status: WorkerStatus,
    ) -> None:
        check_prefix(client, settings.prefix)
        self.settings = settings
        self.redis = client
        self.keys = Keys(settings.prefix)
        self.store = store
        self.sizer = sizer
        self.status = status
        self.shards: list[Shard] = []
        # One batch at a time per process over all shards, as with one stream: the shards'
        # inserters share the store connection, the sizer and the status.
        self.lock = threading.Lock()
        # Personal fields to ciphertext (auditq/pii): one data key cache for every shard.
        self.seal = sealer(settings, store)
        self._turn = 0
        self._grow(settings.shards)

    def start(self) -> None:
        """Record this worker's shard count, and make every shard's consumer group."""
        self._grow(record_shards(self.redis, self.keys, self.settings.shards))
        for shard in self.shards:
            shard.queue.ensure_group()

    def drain(self) -> None:
        """The drain job: each shard in turn, from one further along than last time."""
        self._refresh()
        count = len(self.shards)
        first, self._turn = self._turn % count, self._turn + 1
        for i in range(count):
            if self.status.stopping.is_set():
                return
            self.shards[(first + i) % count].drain.run()

    def reclaim(self) -> None:
        for shard in list(self.shards):
            if self.status.stopping.is_set():
                return
            shard.reclaim.run()

    def _refresh(self) -> None:
        try:
            self._grow(shard_count(self.redis, self.keys, self.settings.shards))
        except redis.RedisError as error:  # drain what is known; the read logs its own error
            log.debug("shard count unread error=%s", type(error).__name__)

    def _grow(self, count: int) -> None:
        """Add parts for shards up to ``count`` (never removes: a shard drains until empty)."""
        s = self.settings
        bound = shard_bound(s.max_queue, s.shards)
        budget = s.drain_budget / s.shards
        for i, keys in enumerate(shard_keys(s.prefix, count)[len(self.shards) :], len(self.shards)):
            queue = Queue(self.redis, keys, bound, shard=i)
            inserter = BatchInserter(
                queue,
                Stats(self.redis, keys),
                self.store,
                self.sizer,
                self.status,
                max_event_bytes=s.max_event_bytes,
                redact_keys=s.redact_key_set,
                seal=self.seal,
                retry_base=s.retry_base,
                retry_max=s.retry_max,
            )
            inserter.lock = self.lock
            reclaim = Reclaim(
                queue, inserter, s.claim_timeout, s.max_deliveries, heartbeats=self.keys
            )
            self.shards.append(Shard(queue, Drain(queue, inserter, budget), reclaim))
            if i >= s.shards:
                log.info(
                    "draining shard %d (recorded by another process) consumer=%s", i, self.status.id
                )
