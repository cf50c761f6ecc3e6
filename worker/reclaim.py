"""The reclaim job: take over entries a dead or stuck worker held past ``claim_timeout``.

Claimed entries are stored like any batch; an entry delivered more than ``max_deliveries``
times goes to the dead-letter stream instead, so an event that crashes every worker
that touches it cannot keep the whole group busy forever. A worker retrying through a
store outage renews its lease on its batch, so an outage alone never counts deliveries up.

The job also forgets consumers that hold nothing and have not read for a long time (the
names of killed processes); Redis keeps every consumer name otherwise.
"""

from __future__ import annotations

import logging

import redis

from auditq.keys import GROUP, Keys
from auditq.queue import Entry, Queue
from worker.insert import BatchInserter

log = logging.getLogger(__name__)

# A live worker reads every drain_interval and one in backoff holds pending entries, so a
# consumer idle this long with nothing pending is a process that is gone.
FORGET_CONSUMER_AFTER_MS = 3_600_000


class Reclaim:
    def __init__(
        self,
        queue: Queue,
        inserter: BatchInserter,
        claim_timeout: float,
        max_deliveries: int,
        heartbeats: Keys | None = None,
    ) -> None:
        self.queue = queue
        # Where the workers' heartbeats are: the prefix's own keys, also for a shard's queue.
        self.heartbeats = heartbeats or queue.keys
        self.inserter = inserter
        self.min_idle_ms = int(claim_timeout * 1000)
        self.max_deliveries = max_deliveries

    def run(self) -> None:
        status = self.inserter.status
        while not status.stopping.is_set():
            # Claim under the batch lock, once the drain's acks are sent: this worker's own
            # batch in flight can then never look idle to its own reclaim job.
            with self.inserter.lock:
                self.inserter.settle()
                count = self.inserter.sizer.read_count()
                try:
                    entries = self.queue.reclaim(status.id, self.min_idle_ms, count)
                except redis.RedisError as error:
                    log.warning("reclaim failed consumer=%s error=%s", status.id, error)
                    return
                if not entries:
                    break
                log.warning(
                    "reclaimed entries consumer=%s entries=%d first=%s",
                    status.id, len(entries), entries[0].id,
                )  # fmt: skip
                self.inserter.count({"reclaimed": len(entries)})
                try:
                    entries = self._dead_letter_worn_out(entries)
                except redis.RedisError as error:
                    log.warning("dead-lettering failed consumer=%s error=%s", status.id, error)
                    return
                self.inserter.handle(entries, backlog=False)
        self._forget_gone_consumers()

    def _dead_letter_worn_out(self, entries: list[Entry]) -> list[Entry]:
        worn = [e for e in entries if e.deliveries > self.max_deliveries]
        if worn:
            first = self.queue.first_failures([e.id for e in worn])
            pipe = self.queue.redis.pipeline(transaction=True)
            dead = [(e, _worn_reason(e, first.get(e.id))) for e in worn]
            self.inserter.dead_letter(dead, pipe)
            self.inserter.stats.incr({"dead_lettered": len(worn)}, pipe)
            pipe.execute()
            self.inserter.status.dead_lettered += len(worn)
            for entry in worn:
                log.warning(
                    "dead-lettered after too many deliveries consumer=%s entry=%s deliveries=%d",
                    self.inserter.consumer, entry.id, entry.deliveries,
                )  # fmt: skip
        return [e for e in entries if e.deliveries <= self.max_deliveries]

    def _forget_gone_consumers(self) -> None:
        """Delete consumers that hold nothing, have not read for an hour and have no heartbeat.

        Deleting a consumer drops its pending entries from the group, so all three must
        hold: a live worker always has a heartbeat, even one stuck in a long backoff. (The
        ack's trim, auditq/lua/ack.lua, relies on it too: an entry leaves the pending list
        only by its ack.)
        """
        client, keys = self.queue.redis, self.queue.keys
        try:
            for consumer in client.xinfo_consumers(keys.stream, GROUP):
                name = consumer["name"]
                name = name.decode() if isinstance(name, bytes) else name
                if (
                    consumer["pending"] == 0
                    and consumer["idle"] > FORGET_CONSUMER_AFTER_MS
                    and not client.exists(self.heartbeats.worker(name))
                ):
                    client.xgroup_delconsumer(keys.stream, GROUP, name)
        except redis.RedisError as error:
            log.warning("consumer cleanup failed error=%s", type(error).__name__)


def _worn_reason(entry: Entry, first: str | None) -> str:
    worn = f"delivered {entry.deliveries} times, over max_deliveries"
    return f"{first} (then {worn})" if first else worn
