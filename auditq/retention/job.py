"""The worker's retention jobs, one worker at a time each under its own Redis lease:
partition maintenance every hour (months ahead, rows out of the default partition), and the
retention pass every day when AUDITQ_RETENTION_DAYS is set (its outcome kept in Redis for the
dashboard and the ``retention_failing`` alert metric)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from auditq.config import Settings
from auditq.keys import Keys
from auditq.lease import RedisLease, holder_token
from auditq.retention import status
from auditq.retention.partitions import maintain
from auditq.scheduling import every
from auditq.stores import StoreError

log = logging.getLogger(__name__)

EXECUTOR = "auditq-retention"
PARTITION_INTERVAL = 3600.0
RETENTION_INTERVAL = 86_400.0
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


def _retention(settings: Settings, client: redis.Redis) -> None:
    from auditq.retention.destinations import ArchiveUnavailable
    from auditq.retention.retain import RetentionBusy, RetentionUnavailable, retention_pass

    try:
        result = retention_pass(settings)
        outcome: dict[str, Any] = {"error": None, **result.to_json()}
    except RetentionBusy:
        return  # a CLI pass is running; it records nothing here, the next run will
    except (RetentionUnavailable, ArchiveUnavailable, StoreError, psycopg.Error) as error:
        # psycopg.Error: the database went away, or the drop was refused (rows arrived).
        log.error("retention: pass failed, nothing more dropped: %s", error)
        outcome = {"error": str(error).splitlines()[0], "months": []}
    with contextlib.suppress(redis.RedisError):
        status.record(client, settings.prefix, outcome)


def _maintain_partitions(settings: Settings) -> None:
    for month, rows in maintain(settings).items():
        log.warning("partitions: moved %d row(s) of %s out of the default partition", rows, month)


def add_jobs(scheduler: Any, settings: Settings, client: redis.Redis) -> list[LeasedJob]:
    """Schedule the retention jobs on an APScheduler scheduler (a thread of their own)."""
    partitions = LeasedJob(
        "partitions", client, settings.prefix, lambda: _maintain_partitions(settings)
    )
    _every(scheduler, partitions, PARTITION_INTERVAL)
    jobs = [partitions]
    if settings.retention_days is None:
        log.info("retention: AUDITQ_RETENTION_DAYS is not set; every month is kept")
        return jobs
    retention = LeasedJob(
        "retention", client, settings.prefix, lambda: _retention(settings, client)
    )
    _every(scheduler, retention, RETENTION_INTERVAL)
    return [*jobs, retention]


def _every(scheduler: Any, job: LeasedJob, seconds: float) -> None:
    # First run at start: a worker that restarts more often than daily still runs it.
    every(scheduler, EXECUTOR, job.run, seconds, id=job.name, next_run_time=datetime.now(UTC))
