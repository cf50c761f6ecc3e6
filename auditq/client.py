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

import threading
import time
from collections.abc import Iterable
from typing import Any

import redis

from auditq import producer
from auditq.config import Settings, load_settings
from auditq.events import AuditEvent, event_row
from auditq.keys import Keys
from auditq.pii.writer import Sealer, sealer
from auditq.producer import AuditUnavailable, Batch, Decision, LogResult
from auditq.queue import connect
from auditq.shards import ShardedQueue
from auditq.stats import Stats
from auditq.stores import Store, StoreError, open_store

__all__ = ["AuditClient", "AuditUnavailable", "LogResult"]


class AuditClient:
    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None, store=None):
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.redis = redis_client or connect(settings.redis_url, timeout=settings.redis_timeout)
        self.queue = ShardedQueue(self.redis, settings.prefix, settings.shards, settings.max_queue)
        self.stats = Stats(self.redis, self.keys, settings.shards)  # counts to shard 0
        self._store: Store | None = store
        self._store_lock = threading.Lock()
        self._sealer: Sealer | None = None
        self._unsent = producer.Unsent()
        self.warnings = producer.WarnEvery()

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
        batch = Batch.of(events, self.settings.max_event_bytes, self.settings.redact_key_set)
        for critical, indexes in batch.groups():
            if critical:
                batch.decide(indexes, self._log_critical(*batch.pick(indexes)))
            else:
                batch.decide(indexes, self._enqueue_normal(batch, indexes))
        return batch.results()

    def close(self) -> None:
        # Counts held since a Redis failure get one last try (one timeout at most).
        self._unsent.retry_now()
        self._flush_unsent()
        self.redis.close()
        if self._store is not None:
            self._store.close()

    # --- normal events --------------------------------------------------------------------

    def _enqueue_normal(self, batch: Batch, indexes: list[int]) -> list[Decision]:
        policy = self.settings.overflow
        payloads, tenants = batch.payloads(indexes), batch.tenants(indexes)
        try:
            ids = self.queue.enqueue(
                [("normal", p) for p in payloads], tenants, on_full=producer.on_full(policy)
            )
            if policy == "block":
                ids = self._wait_for_room(payloads, tenants, ids)
        except redis.RedisError as error:
            self._unsent.redis_failed()
            decisions, counts = producer.redis_down(len(payloads), error, self.warnings)
            self._count(counts)
            return decisions
        self.warnings.flush(producer.REDIS_DOWN)
        self._flush_unsent()
        no_room = producer.full(ids)
        written = bool(no_room) and policy == "direct"
        written = written and self._write_direct([batch.event(indexes[i]) for i in no_room])
        decisions, counts = producer.normal_decisions(ids, policy, written)
        if counts:
            self._count(counts)
        return decisions

    def _wait_for_room(
        self, payloads: list[str], tenants: list[str | None], ids: list[str | None]
    ) -> list[str | None]:
        deadline = time.monotonic() + self.settings.block_timeout
        while None in ids and time.monotonic() < deadline:
            time.sleep(producer.BLOCK_POLL)
            waiting = producer.full(ids)
            retried = self.queue.enqueue(
                [("normal", payloads[i]) for i in waiting],
                [tenants[i] for i in waiting],
                on_full="reject",
            )
            producer.fill(ids, waiting, retried)
        return ids

    # --- critical events ------------------------------------------------------------------

    def _log_critical(self, events: list[AuditEvent], payloads: list[str]) -> list[Decision]:
        if self._write_direct(events):
            return producer.written(len(events))
        try:
            self.queue.enqueue([("critical", p) for p in payloads], [e.tenant_id for e in events])
        except redis.RedisError as error:
            self._unsent.redis_failed()
            raise producer.unavailable(len(events)) from error
        decisions, counts = producer.deferred(len(events))
        self._count(counts)
        return decisions

    def _write_direct(self, events: list[AuditEvent]) -> bool:
        store = self._get_store()
        if store is None:
            return False
        failure: StoreError | None = None
        try:
            rows = [event_row(event, "direct") for event in events]
            store.insert_rows(self._seal(store)(rows))
        except StoreError as error:
            failure = error
        self._count(producer.direct_counts(len(events), failure, self.warnings))
        return failure is None

    def _seal(self, store: Store) -> Sealer:
        """Personal fields to ciphertext before the direct write (auditq/pii), with one
        key cache per client."""
        with self._store_lock:
            if self._sealer is None:
                self._sealer = sealer(self.settings, store)
            return self._sealer

    def _get_store(self) -> Store | None:
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.settings, timeout=self.settings.direct_timeout)
            return self._store

    # --- counters -------------------------------------------------------------------------

    def _count(self, counts: dict[str, int]) -> None:
        """Count in Redis; if Redis is down, remember and add it on the next success."""
        if self._unsent.hold(counts):
            return
        try:
            self.stats.incr(counts)
        except redis.RedisError:
            self._unsent.redis_failed(counts)

    def _flush_unsent(self) -> None:
        if unsent := self._unsent.take():
            self._count(unsent)
