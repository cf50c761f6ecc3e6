"""One worker process: an APScheduler BlockingScheduler with the drain, reclaim and heartbeat
jobs, and a clean stop on SIGTERM/SIGINT.

Stopping: the signal sets the stop event (no new batch starts, a backoff sleep ends at
once), a helper thread shuts the scheduler down and waits for the jobs in flight, then the
heartbeat is removed. A job still running after ``shutdown_grace`` (an insert blocked in
the database) is abandoned: the process exits anyway, and what it held stays pending in
the stream for another worker to reclaim, which is why exiting early loses nothing.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from auditq.alerts.evaluator import add_job as add_alert_job
from auditq.config import Settings
from auditq.keys import Keys
from auditq.queue import connect
from auditq.stores import Store
from worker.batching import AdaptiveBatch
from worker.heartbeat import Heartbeat, WorkerStatus
from worker.shards import Shards

YOUNG_OBJECTS = 100_000  # allocations between two young collections (CPython's default: 700)
log = logging.getLogger(__name__)

# Bounds a hung Redis connection; the worker issues no blocking commands, so a generous
# value costs nothing in normal operation.
REDIS_TIMEOUT = 10.0
EXIT_FORCED = 3


class Worker:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.stopping = threading.Event()
        client = connect(settings.redis_url, timeout=REDIS_TIMEOUT)
        keys = Keys(settings.prefix)
        self.sizer = AdaptiveBatch.for_store(store.name, settings)
        self.status = WorkerStatus(stopping=self.stopping, batch_size=self.sizer.size)
        self.heartbeat = Heartbeat(
            client, keys, self.status, settings.heartbeat_ttl, settings.worker_forget_after
        )
        self.shards = Shards(settings, client, store, self.sizer, self.status)
        self.scheduler = self._scheduler()
        self._stop_thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    def _scheduler(self) -> BlockingScheduler:
        s = self.settings
        # One thread per job: a drain blocked in the database never delays a heartbeat.
        scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(3)}, timezone=UTC)
        # misfire_grace_time=None: a run that is late (a busy host) still runs, once.
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self.heartbeat.beat, "interval", seconds=s.heartbeat_interval, id="heartbeat",
            next_run_time=_now(), **common,
        )  # fmt: skip
        scheduler.add_job(
            self.shards.drain, "interval", seconds=s.drain_interval, id="drain",
            next_run_time=_now(), **common,
        )  # fmt: skip
        # Checking twice per claim timeout takes an entry over at most 1.5 timeouts after
        # its worker died.
        scheduler.add_job(
            self.shards.reclaim, "interval", seconds=s.claim_timeout / 2, id="reclaim", **common
        )
        # Alert evaluation runs in workers and web processes alike (leases pick one at a
        # time), so alerts keep working whichever of them is alive.
        add_alert_job(scheduler, s)
        # Seals (auditq/seals): every worker schedules them, a Redis lease picks one at a time.
        from auditq.seals.job import add_job as add_seal_job

        self.seals = add_seal_job(scheduler, s, self.store, self.shards.redis)
        # Partitions and retention (auditq/retention): leased jobs, one worker at a time.
        from auditq.retention.job import add_jobs as add_retention_jobs

        self.retention = add_retention_jobs(scheduler, s, self.shards.redis)
        return scheduler

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code."""
        _warn_about_timeouts(self.settings)
        self.shards.start()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        log.info(
            "worker started consumer=%s store=%s prefix=%s shards=%d",
            self.status.id, self.store.name, self.settings.prefix, len(self.shards.shards),
        )  # fmt: skip
        # The collector cost up to a quarter of the drain's CPU (bench/HISTORY.md, issue
        # 12, Round 3). What start-up made (modules, settings, clients) lives as long as the
        # process: frozen, no collection walks it again. A batch makes tens of thousands of
        # objects that reference counting frees: collecting the young ones every 100,000
        # allocations rather than 700 keeps a batch from being walked, and promoted, again
        # and again while it is stored (nothing of a batch waits in a cycle for it:
        # worker/insert.py lets go of what the retry hooks held).
        gc.freeze()
        gc.set_threshold(YOUNG_OBJECTS)
        self.scheduler.start()  # blocks until the stop thread has shut it down
        if self._stop_thread is not None:
            self._stop_thread.join()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.heartbeat.remove()
        self.store.close()
        log.info("worker stopped consumer=%s", self.status.id)
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("stopping consumer=%s signal=%s", self.status.id, signal.Signals(signum).name)
        # The scheduler's shutdown waits for running jobs: not in a signal handler.
        self._stop_thread = threading.Thread(target=self._stop, name="stop", daemon=True)
        self._stop_thread.start()
        self._watchdog = threading.Timer(self.settings.shutdown_grace, self._force_exit)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _stop(self) -> None:
        self.heartbeat.beat()  # readers see "stopping" at once
        while not self.scheduler.running:  # a signal that came before start() got going
            time.sleep(0.01)
        self.scheduler.pause()  # no new runs while the running ones finish
        self.scheduler.shutdown(wait=True)

    def _force_exit(self) -> None:
        log.warning(
            "shutdown grace over, exiting with work in flight consumer=%s grace_s=%s",
            self.status.id, self.settings.shutdown_grace,
        )  # fmt: skip
        self.heartbeat.remove()
        logging.shutdown()
        os._exit(EXIT_FORCED)


def _warn_about_timeouts(s: Settings) -> None:
    # Not errors: the worker still loses nothing, it only does avoidable work.
    if s.store_timeout + s.retry_max >= s.claim_timeout:
        log.warning(
            "AUDITQ_STORE_TIMEOUT + AUDITQ_RETRY_MAX >= AUDITQ_CLAIM_TIMEOUT: other workers may"
            " take over a batch this one is still retrying (stored twice, skipped by id)"
        )
    if s.store_timeout >= s.shutdown_grace:
        log.warning(
            "AUDITQ_STORE_TIMEOUT >= AUDITQ_SHUTDOWN_GRACE: a stop may abandon an insert in"
            " flight (its batch is reclaimed later)"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def configure_logging(level: str) -> None:
    # key=value lines: grep-able on Heroku's log drain and parseable by log tools.
    logging.basicConfig(
        level=max(logging.INFO, logging.getLevelName(level)),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    # DEBUG is for auditq's own lines (one per batch), not every library's internals.
    for name in ("worker", "auditq"):
        logging.getLogger(name).setLevel(level)
    # APScheduler logs every job run at INFO, and a skipped overlapping run of the drain
    # (by design: max_instances=1) at WARNING; neither is a problem worth a line.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    # httpx (under supabase-py) logs every request at INFO: one line per batch is ours.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # psycopg warns about a COPY it aborts with the database's message, which can quote the
    # refused value (event contents); the store raises the same error, which we log by code.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
