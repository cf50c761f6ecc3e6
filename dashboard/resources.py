"""What the dashboard talks to, made once per app and shared by its threads.

Redis clients are thread-safe (a connection pool); the store is opened on first use, so the
dashboard starts (and /healthz can say what is wrong) while the database is down.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from flask import abort, current_app

from auditq.alerts.repo import open_repo
from auditq.alerts.service import AlertService
from auditq.client import AuditClient
from auditq.config import Settings
from auditq.keys import Keys
from auditq.queue import Depth, connect
from auditq.shards import ShardedQueue, queue_depth, shard_count
from auditq.stats import Stats
from auditq.stores import Store, open_store

# Dashboard reads may wait longer than a producer (AUDITQ_REDIS_TIMEOUT is a request-path
# bound); a page that hangs on a dead Redis still answers within this.
REDIS_TIMEOUT = 2.0
STORE_TIMEOUT = 15.0  # explorer queries and exports


class Resources:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.redis: redis.Redis = connect(settings.redis_url, timeout=REDIS_TIMEOUT)
        # Where requeued dead letters go: the producers' shards, bounds and spilling.
        self.queue = ShardedQueue(self.redis, settings.prefix, settings.shards, settings.max_queue)
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._audit: AuditClient | None = None
        self._alerts: AlertService | None = None

    @property
    def store(self) -> Store | None:
        """The configured store (opened on first use), or None when none is configured."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings, timeout=STORE_TIMEOUT)
            return self._store

    @property
    def audit(self) -> AuditClient:
        """The producer the dashboard logs through: ingest API and its own admin actions."""
        with self._lock:
            if self._audit is None:
                # Its own Redis connection with the producer timeout; the store for critical
                # events is opened by the client when first needed.
                self._audit = AuditClient(self.settings)
            return self._audit

    def shards(self) -> int:
        """The shards to sum (AUDITQ_SHARDS, or the highest any process used): one GET."""
        return shard_count(self.redis, self.keys, self.settings.shards)

    def stats(self, shards: int) -> Stats:
        """Counters read over ``shards`` shards (pass ``shards()``)."""
        return Stats(self.redis, self.keys, shards)

    def depth(self, shards: int, now: float | None = None) -> Depth:
        """Queue length, dead letters and lag over ``shards`` shards."""
        return queue_depth(self.redis, self.keys, shards, now)

    @property
    def alerts(self) -> AlertService | None:
        """The alerts pages' and API's service (its repository opened on first use), or
        None when no store is configured."""
        with self._lock:
            if self._alerts is None:
                repo = open_repo(self.settings)
                if repo is not None:
                    self._alerts = AlertService(repo, self.redis, self.settings)
            return self._alerts

    def workers(self, now: float | None = None) -> list[dict[str, Any]]:
        from dashboard.workers import list_workers

        return list_workers(self.redis, self.keys, self.settings.heartbeat_ttl, now)

    def close(self) -> None:
        self.redis.close()
        if self._store is not None:
            self._store.close()
        if self._audit is not None:
            self._audit.close()
        if self._alerts is not None:
            self._alerts.repo.close()


def resources() -> Resources:
    return current_app.extensions["auditq"]


def alert_service() -> AlertService:
    """The app's alert service, for the alerts pages and API; 503 without a store."""
    svc = resources().alerts
    if svc is None:
        abort(503, "Alerts need a store: set SUPABASE_URL or DATABASE_URL.")
    return svc
