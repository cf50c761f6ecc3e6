"""The worker's retention jobs, one worker at a time each under its own Redis lease:
partition maintenance every hour (months ahead, rows out of the default partition)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from auditq.alerts.lease import RedisLease, holder_token
from auditq.config import Settings
from auditq.keys import Keys
from auditq.retention.partitions import maintain
from auditq.stores import StoreError

log = logging.getLogger(__name__)

EXECUTOR = "auditq-retention"
PARTITION_INTERVAL = 3600.0
# Longer than a pass can take, so the lease never lapses under a running one; released after.
LEASE_TTL = 1800.0


class LeasedJob:
    """Run ``work`` when this worker holds the lease ``name``; skip the run otherwise."""

    def __init__(self, name: str, client: redis.Redis, prefix: str, work: Callable[[], Any]):
        self.name = name
        self.work = work
        self.lease = RedisLease(client, Keys(prefix).lock(name), LEASE_TTL, holder_token())

    def run(self) -> None:
        try:
            if not self.lease.acquire():
                return  # another worker runs it
        except redis.RedisError as error:
            log.warning("%s: lease unavailable (%s); skipping", self.name, type(error).__name__)
            return
        try:
            self.work()
        except StoreError as error:
            log.warning("%s: pass failed: %s", self.name, error)
        finally:
            with contextlib.suppress(redis.RedisError):
                self.lease.release()


def _maintain_partitions(settings: Settings) -> None:
    for month, rows in maintain(settings).items():
        log.warning("partitions: moved %d row(s) of %s out of the default partition", rows, month)


def add_jobs(scheduler: Any, settings: Settings, client: redis.Redis) -> list[LeasedJob]:
    """Schedule the retention jobs on an APScheduler scheduler (a thread of their own)."""
    from apscheduler.executors.pool import ThreadPoolExecutor

    scheduler.add_executor(ThreadPoolExecutor(1), EXECUTOR)
    partitions = LeasedJob(
        "partitions", client, settings.prefix, lambda: _maintain_partitions(settings)
    )
    scheduler.add_job(
        partitions.run,
        "interval",
        seconds=PARTITION_INTERVAL,
        id="partitions",
        executor=EXECUTOR,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )
    return [partitions]
