"""The drain job: read new entries for this consumer and store them, while a backlog lasts.

The scheduler starts a run every ``drain_interval`` (one at a time, missed runs coalesced).
A run reads batch after batch while the reads come back full, and stops at the first short
read, at ``drain_budget`` seconds, or on shutdown; the next run picks up from there.
"""

from __future__ import annotations

import logging
import time

import redis

from auditq.queue import Queue
from worker.insert import BatchInserter

log = logging.getLogger(__name__)


class Drain:
    def __init__(self, queue: Queue, inserter: BatchInserter, budget: float) -> None:
        self.queue = queue
        self.inserter = inserter
        self.budget = budget

    def run(self) -> None:
        deadline = time.monotonic() + self.budget
        status = self.inserter.status
        while not status.stopping.is_set():
            count = self.inserter.sizer.read_count()
            try:
                entries = self.queue.read(self.inserter.consumer, count)
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # The stream or group vanished (a Redis restart without persistence, a
                # flush): make it again and read on the next run.
                log.warning("consumer group missing, creating it consumer=%s", status.id)
                self.queue.ensure_group()
                return
            except redis.RedisError as error:
                log.warning("read failed consumer=%s error=%s", status.id, type(error).__name__)
                return
            if not entries:
                return
            # A full read means more is waiting: the signal the batch size grows on.
            backlog = len(entries) >= count
            with self.inserter.lock:
                self.inserter.handle(entries, backlog)
            if not backlog or time.monotonic() > deadline:
                return
