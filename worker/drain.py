"""The drain job: read new entries for this consumer and store them, while a backlog lasts.

The scheduler starts a run every ``drain_interval`` (one at a time, missed runs coalesced).
A run reads batch after batch while the reads come back full, and stops at the first short
read, at ``drain_budget`` seconds, or on shutdown; the next run picks up from there.

Pipelined (worker/pipeline.py): while batch N is stored, batch N-1's acks are sent and
batch N+1 is read, decoded and encoded on the prefetch thread; a run returns once its acks
are sent. A batch already read when the run ends (shutdown, budget) is stored
too, so a stop finishes what this worker took; if the store is failing then, it stays
pending for reclaim, unacked.
"""

from __future__ import annotations

import time

from auditq.queue import Queue
from worker.insert import BatchInserter
from worker.pipeline import Prefetch


class Drain:
    def __init__(self, queue: Queue, inserter: BatchInserter, budget: float) -> None:
        self.inserter = inserter
        self.budget = budget
        self.prefetch = Prefetch(queue, inserter)

    def run(self) -> None:
        deadline = time.monotonic() + self.budget
        stopping = self.inserter.status.stopping
        batch = None if stopping.is_set() else self.prefetch.fetch()
        try:
            while batch is not None:
                more = batch.backlog and not stopping.is_set() and time.monotonic() <= deadline
                upcoming = self.prefetch.ahead() if more else None
                with self.inserter.lock:
                    self.inserter.store_decoded(batch.decoded, batch.backlog, self.prefetch.pool)
                # Also after a stop: the next batch is already read and held by this consumer.
                batch = self.prefetch.take(upcoming) if upcoming is not None else None
        finally:
            self.inserter.settle()
