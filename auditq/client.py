"""``AuditClient``: where an audit event enters auditq.

``log()`` validates the event, then:
- ``normal``: adds it to the Redis stream through the enqueue script (sub-millisecond);
  when the stream is at its bound, the overflow policy decides (drop, block, direct);
- ``critical``: writes it straight to the store with a timeout; if that fails it is queued
  instead (``deferred``), past the bound if need be. A critical event is never dropped:
  if neither the store nor Redis takes it, ``log()`` raises ``AuditUnavailable``.
When Redis is unreachable, every call returns within ``AUDITQ_REDIS_TIMEOUT``.

A timeout is not a refusal: Redis may have run the script after the client stopped
waiting, so an event reported ``dropped`` (reason ``redis_unavailable``) can still arrive;
nothing is lost that way, only miscounted. Keep ``log_many`` calls to about a thousand
events, which fit well inside the default 100 ms; a caller that retries a critical event
after ``AuditUnavailable`` should pass the same ``AuditEvent`` so its id stays the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from auditq.config import Settings, load_settings
from auditq.events import AuditEvent, build_event, encode
from auditq.keys import Keys
from auditq.queue import Queue, connect
from auditq.stats import Stats
from auditq.stores import Store, StoreError, open_store

log = logging.getLogger(__name__)

Outcome = Literal["queued", "written", "deferred", "dropped"]
_BLOCK_POLL = 0.01  # seconds between retries while waiting for room (overflow=block)
_REDIS_RETRY_AFTER = 1.0  # seconds counters stay in memory after a Redis failure
WARN_EVERY = 10.0  # seconds between two warnings for the same reason (a count in between)
REDIS_DOWN = "redis unavailable, normal events dropped"
DIRECT_FAILED = "direct write to the store failed"


class WarnEvery:
    """At most one warning line per ``interval`` seconds per reason, saying how many.

    A producer in an outage fails on every call; one line per call (thousands a second)
    buries the log and costs more than the event. The first failure is logged at once,
    the rest are counted and logged with their count when the interval has passed or
    when things work again (``flush``), so no failure goes unreported.
    """

    def __init__(self, logger: logging.Logger, interval: float = WARN_EVERY) -> None:
        self.log = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # reason -> when it was last logged
        self._pending: Counter[str] = Counter()
        self._detail: dict[str, str] = {}

    def warn(self, reason: str, count: int, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._pending[reason] += count
            self._detail[reason] = detail
            if now - self._last.get(reason, float("-inf")) < self.interval:
                return
            self._last[reason] = now
            count = self._pending.pop(reason)
        self.log.warning("%s: %d events (%s)", reason, count, detail)

    def flush(self, reason: str) -> None:
        """Log what was counted and not yet logged (call when the failing thing works)."""
        if not self._pending:  # the common case, without the lock
            return
        with self._lock:
            count = self._pending.pop(reason, 0)
            self._last.pop(reason, None)  # the next outage is reported at once
        if count:
            self.log.warning(
                "%s: %d more events before it recovered (%s)", reason, count, self._detail[reason]
            )


class AuditUnavailable(RuntimeError):
    """A critical event could be neither written nor queued; the caller must know."""


@dataclass(frozen=True)
class LogResult:
    id: str
    outcome: Outcome
    reason: str | None = None  # why it was dropped or deferred


class AuditClient:
    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None, store=None):
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.redis = redis_client or connect(settings.redis_url, timeout=settings.redis_timeout)
        self.queue = Queue(self.redis, self.keys, settings.max_queue)
        self.stats = Stats(self.redis, self.keys)
        self._store: Store | None = store
        self._store_lock = threading.Lock()
        # Counts that could not reach Redis while it was down; added on the next success.
        self._unsent: Counter[str] = Counter()
        self._redis_failed_at = float("-inf")
        self.warnings = WarnEvery(log)

    @classmethod
    def from_env(cls) -> AuditClient:
        return cls(load_settings())

    # --- public API ------------------------------------------------------------------------

    def log(self, action: str, **fields: Any) -> LogResult:
        return self.log_many([{"action": action, **fields}])[0]

    def log_many(self, events: Iterable[dict[str, Any] | AuditEvent]) -> list[LogResult]:
        """Validate all, then enqueue the normal ones in one round trip.

        Raises EventError (naming the field) before anything is sent if any event is invalid.
        """
        built = [e if isinstance(e, AuditEvent) else build_event(e) for e in events]
        payloads = [encode(e, self.settings.max_event_bytes) for e in built]
        results: list[LogResult | None] = [None] * len(built)
        normal = [i for i, e in enumerate(built) if e.category == "normal"]
        critical = [i for i, e in enumerate(built) if e.category == "critical"]
        for indexes, handle in ((normal, self._enqueue_normal), (critical, self._log_critical)):
            if not indexes:
                continue
            outcomes = handle([built[i] for i in indexes], [payloads[i] for i in indexes])
            for i, (outcome, reason) in zip(indexes, outcomes, strict=True):
                results[i] = LogResult(str(built[i].id), outcome, reason)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.redis.close()
        if self._store is not None:
            self._store.close()

    # --- normal events --------------------------------------------------------------------

    def _enqueue_normal(
        self, events: list[AuditEvent], payloads: list[str]
    ) -> list[tuple[Outcome, str | None]]:
        policy = self.settings.overflow
        try:
            ids = self.queue.enqueue(
                [("normal", p) for p in payloads], on_full="drop" if policy == "drop" else "reject"
            )
            if policy == "block":
                ids = self._wait_for_room(payloads, ids)
        except redis.RedisError as error:
            self._redis_failed_at = time.monotonic()
            self.warnings.warn(REDIS_DOWN, len(payloads), type(error).__name__)
            self._count({"dropped_redis_unavailable": len(payloads)})
            return [("dropped", "redis_unavailable")] * len(payloads)
        self.warnings.flush(REDIS_DOWN)
        self._flush_unsent()
        full = [i for i, entry_id in enumerate(ids) if entry_id is None]
        outcomes: list[tuple[Outcome, str | None]] = [("queued", None)] * len(payloads)
        if not full:
            return outcomes
        if policy == "direct":
            written = self._write_direct([events[i] for i in full])
            for i in full:
                outcomes[i] = ("written", None) if written else ("dropped", "direct_failed")
            if not written:
                self._count({"dropped_direct_failed": len(full)})
        else:
            for i in full:
                outcomes[i] = ("dropped", "queue_full")
            if policy == "block":  # the script counted drops itself for policy=drop
                self._count({"dropped_queue_full": len(full)})
        return outcomes

    def _wait_for_room(self, payloads: list[str], ids: list[str | None]) -> list[str | None]:
        deadline = time.monotonic() + self.settings.block_timeout
        while None in ids and time.monotonic() < deadline:
            time.sleep(_BLOCK_POLL)
            waiting = [i for i, entry_id in enumerate(ids) if entry_id is None]
            retried = self.queue.enqueue(
                [("normal", payloads[i]) for i in waiting], on_full="reject"
            )
            for i, entry_id in zip(waiting, retried, strict=True):
                ids[i] = entry_id
        return ids

    # --- critical events ------------------------------------------------------------------

    def _log_critical(
        self, events: list[AuditEvent], payloads: list[str]
    ) -> list[tuple[Outcome, str | None]]:
        if self._write_direct(events):
            return [("written", None)] * len(events)
        try:
            self.queue.enqueue([("critical", p) for p in payloads])
        except redis.RedisError as error:
            self._redis_failed_at = time.monotonic()
            raise AuditUnavailable(
                f"{len(events)} critical event(s) could be neither written to the store nor queued"
            ) from error
        self._count({"deferred": len(events)})
        return [("deferred", "store_unavailable")] * len(events)

    def _write_direct(self, events: list[AuditEvent]) -> bool:
        store = self._get_store()
        if store is None:
            return False
        try:
            store.insert_events(events, ingest_path="direct")
        except StoreError as error:
            self.warnings.warn(DIRECT_FAILED, len(events), str(error))
            self._count({"direct_failed": len(events)})
            return False
        self.warnings.flush(DIRECT_FAILED)
        self._count({"direct_written": len(events)})
        return True

    def _get_store(self) -> Store | None:
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.settings, timeout=self.settings.direct_timeout)
            return self._store

    # --- counters -------------------------------------------------------------------------

    def _count(self, counts: dict[str, int]) -> None:
        """Count in Redis; if Redis is down, remember and add it on the next success.

        Right after a Redis failure counts go straight to memory, so a call never pays
        the Redis timeout twice.
        """
        if time.monotonic() - self._redis_failed_at < _REDIS_RETRY_AFTER:
            self._unsent.update(counts)
            return
        try:
            self.stats.incr(counts)
        except redis.RedisError:
            self._redis_failed_at = time.monotonic()
            self._unsent.update(counts)

    def _flush_unsent(self) -> None:
        if self._unsent:
            unsent, self._unsent = self._unsent, Counter()
            self._count(dict(unsent))
