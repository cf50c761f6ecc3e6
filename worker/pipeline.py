"""Read and decode the next batch while the current one is being written.

A raw bulk insert is bound by round trips and commits, not CPU: while a worker waits for
the store's answer it has nothing to do, unless the next batch is already on its way. The
``Prefetch`` reads batch N+1 from the stream and decodes it on a thread of its own while
the drain thread stores batch N (the GIL is free while that thread waits on its socket).
The acks of batch N go on that thread too, once N is committed, so batch N+1's insert does
not wait for their round trip.

What this does not change: a batch read is pending to this consumer until the commit that
stores it, then acked; so a crash with N in flight and N+1 decoded leaves both pending for
reclaim, and a store failure on N holds N+1 until N is stored, renewing both leases while
it retries (so other workers do not take N+1 over and count deliveries towards the
dead-letter stream). At most one batch is read ahead: a worker holds at most two batches.
A crash with N's acks in flight leaves N pending; redelivered, its rows are skipped by id.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import redis

from auditq.queue import Queue
from worker.insert import BatchInserter, Decoded

log = logging.getLogger(__name__)


@dataclass
class Batch:
    decoded: Decoded
    backlog: bool  # the read came back full: more is waiting


class Prefetch:
    def __init__(self, queue: Queue, inserter: BatchInserter) -> None:
        self.queue = queue
        self.inserter = inserter
        # One thread, one task at a time, in order: the read-ahead is one batch deep, and the
        # acks of batch N (sent here too, worker/insert.py) run before batch N+2 is read.
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")

    def fetch(self) -> Batch | None:
        """Read new entries and decode them; None when there are none or Redis failed."""
        count = self.inserter.sizer.read_count()
        consumer = self.inserter.consumer
        try:
            entries = self.queue.read(consumer, count)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream or group vanished (a Redis restart without persistence, a
            # flush): make it again and read on the next run.
            log.warning("consumer group missing, creating it consumer=%s", consumer)
            self.queue.ensure_group()
            return None
        except redis.RedisError as error:
            log.warning("read failed consumer=%s error=%s", consumer, type(error).__name__)
            return None
        if not entries:
            return None
        # A full read means more is waiting: the signal the batch size grows on.
        return Batch(self.inserter.decode_batch(entries), len(entries) >= count)

    def ahead(self) -> Future[Batch | None]:
        """Start fetching the next batch on the prefetch thread; until the drain takes it,
        its entries are renewed with the batch being stored (``inserter.read_ahead``)."""
        return self.pool.submit(self._fetch_ahead)

    def take(self, upcoming: Future[Batch | None]) -> Batch | None:
        """The batch read ahead, now the one to store (its lease renewed as the batch's)."""
        batch = upcoming.result()
        self.inserter.read_ahead = []
        return batch

    def _fetch_ahead(self) -> Batch | None:
        batch = self.fetch()
        if batch is not None:
            self.inserter.read_ahead = [entry.id for entry in batch.decoded.entries]
        return batch
