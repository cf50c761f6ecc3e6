"""The evaluator: every few seconds, read the metrics, step every rule, write state changes
and their notifications to the store, then deliver what is due.

It runs in every web process (a ``BackgroundScheduler`` that ``create_app`` starts, unless
``AUDITQ_ALERTS_IN_WEB=false``) and in every worker process (a job in the worker's
scheduler), because it must keep working when every worker is dead. A Redis lease picks
one of them: ``SET key token NX PX`` to take it, renewed by its holder on every run (a Lua
script that checks the token), released on shutdown. If the holder dies, another process
takes over at most ``AUDITQ_ALERT_LEASE`` seconds later.

Writes per rule and evaluation, in this order: outbox rows (deterministic keys), history,
then the rule's state. An evaluator that dies in between re-creates the same outbox rows on
the next run (ignored), so a notification is never lost and never written twice.

``Evaluator.evaluate_once(now=...)`` takes the time as an argument, so tests drive the
clock; the scheduled job passes the real time.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from auditq.alerts import metrics as metrics_mod
from auditq.alerts.defaults import seed_defaults
from auditq.alerts.outbox import HISTORY, Delivery, Outbox
from auditq.alerts.repo import Repo, open_repo, rows_by
from auditq.alerts.rules import EPSILON, Notification, Rule, RuleState, reset, step
from auditq.config import Settings
from auditq.keys import Keys
from auditq.queue import connect
from auditq.stores import StoreError

log = logging.getLogger(__name__)

LEASE_NAME = "alerts"
EXECUTOR = "auditq-alerts"
PRUNE_EVERY = 3600.0
HISTORY_DAYS = 30
OUTBOX_DAYS = 7

_TAKE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def status_key(keys: Keys) -> str:
    """JSON written by the lease holder after each run: when, who, what is firing."""
    return f"{keys.prefix}:alerts:status"


class Lease:
    """A Redis lease: one holder at a time, which must renew it before ``ttl`` runs out."""

    def __init__(self, client: redis.Redis, key: str, ttl: float, token: str | None = None):
        self.redis = client
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._take = client.register_script(_TAKE_OR_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease, or renew it if this holder has it. False if another holds it."""
        return bool(self._take(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        return bool(self._release(keys=[self.key], args=[self.token]))

    def holder(self) -> str | None:
        raw = self.redis.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw


@dataclass
class Report:
    now: float
    metrics: dict[str, float | None]
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    enqueued: int = 0
    deliveries: list[Delivery] = field(default_factory=list)


class Evaluator:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | None = None,
        repo: Repo | None = None,
        *,
        http: httpx.Client | None = None,
        token: str | None = None,
        seed: bool = False,
    ):
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._own_redis = redis_client is None
        self.redis = redis_client or connect(settings.redis_url, timeout=5.0)
        self._own_repo = repo is None
        repo = repo if repo is not None else open_repo(settings)
        if repo is None:
            raise ValueError("alerts need a store (SUPABASE_URL or DATABASE_URL)")
        self.repo = repo
        self._own_http = http is None
        self.http = http or httpx.Client(follow_redirects=False)
        # The lease must outlive a run (with its deliveries) and the gap to the next one.
        ttl = max(settings.alert_lease, 2 * settings.alert_interval + 1)
        self.lease = Lease(self.redis, self.keys.lock(LEASE_NAME), ttl, token)
        self.outbox = Outbox(
            self.repo,
            self.http,
            timeout=settings.alert_http_timeout,
            max_attempts=settings.alert_max_attempts,
            retry_max=settings.alert_retry_max,
        )
        self.seed = seed
        self._seeded = False
        self._pruned_at: float | None = None
        self._lock = threading.Lock()
        self._closed = False

    # --- one run ---------------------------------------------------------------------------

    def evaluate_once(self, now: float | None = None) -> Report | None:
        """One evaluation if this process holds the lease; None if another one does."""
        with self._lock:
            try:
                if not self.lease.acquire():
                    return None
            except redis.RedisError as error:
                log.warning("alerts: cannot take the lease, Redis unavailable: %s", error)
                return None
            now = time.time() if now is None else now
            if self.seed and not self._seeded:
                added = seed_defaults(self.repo)
                if added:
                    log.info("alerts: seeded %d default rules", added)
                self._seeded = True
            report = self._evaluate(now)
            report.deliveries = self.outbox.deliver_due(now, keep_going=self._still_leader)
            self._prune(now)
            self._publish(report)
            return report

    def _evaluate(self, now: float) -> Report:
        values = metrics_mod.collect(self.redis, self.keys, self.settings.heartbeat_ttl, now)
        report = Report(now, values)
        rules = [Rule.from_row(r) for r in self.repo.list("alert_rules", order="created_at")]
        states = rows_by(self.repo.list("alert_rule_state"), "rule_id")
        channels = rows_by(self.repo.list("alert_channels"))
        silenced = {
            s["rule_id"]
            for s in self.repo.list("alert_silences", [("ends_at", "gt", now)])
            if s["starts_at"] <= now + EPSILON
        }
        for rule in rules:
            before = RuleState.from_row(states.get(rule.id))
            targets = [channels[c] for c in rule.channel_ids if channels.get(c, {}).get("enabled")]
            value = values.get(rule.metric)
            if rule.enabled:
                result = step(rule, before, value, now, bool(targets) and rule.id not in silenced)
            else:
                result = reset(rule, before, now)
            rows = [
                self._outbox_row(rule, note, channel, value, now)
                for note in result.notifications
                for channel in targets
            ]
            if rows:
                report.enqueued += self.outbox.enqueue(rows)
            after = result.state
            if after.state != before.state:
                report.transitions.append((rule.name, before.state, after.state))
                self.repo.insert(
                    HISTORY,
                    {
                        "happened_at": now,
                        "event": "state",
                        "rule_id": rule.id,
                        "rule_name": rule.name,
                        "from_state": before.state,
                        "to_state": after.state,
                        "value": value,
                        "detail": rule.describe(),
                    },
                )
                log.info(
                    "alert %r: %s -> %s (value %s)", rule.name, before.state, after.state, value
                )
            if _differs(before, after) or rule.id not in states:
                self.repo.upsert(
                    "alert_rule_state",
                    {"rule_id": rule.id, **after.to_row(), "updated_at": now},
                    on_conflict="rule_id",
                )
        return report

    def _outbox_row(
        self,
        rule: Rule,
        note: Notification,
        channel: dict[str, Any],
        value: float | None,
        now: float,
    ) -> dict[str, Any]:
        message = build_message(rule, note, value, now, self.settings.public_url)
        message["channel_name"] = channel["name"]
        return {
            "key": f"{rule.id}:{note.episode}:{note.kind}:{note.seq}:{channel['id']}",
            "rule_id": rule.id,
            "channel_id": channel["id"],
            "kind": note.kind,
            "message": message,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }

    def _still_leader(self) -> bool:
        try:
            return self.lease.acquire()
        except redis.RedisError:
            return False

    def _prune(self, now: float) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            self.repo.delete_where(HISTORY, [("happened_at", "lt", now - HISTORY_DAYS * 86400)])
            for status in ("sent", "failed"):
                self.repo.delete_where(
                    "alert_outbox",
                    [("status", "eq", status), ("created_at", "lt", now - OUTBOX_DAYS * 86400)],
                )
        except StoreError as error:
            log.warning("alerts: pruning old history failed: %s", error)

    def _publish(self, report: Report) -> None:
        status = {
            "at": report.now,
            "holder": self.lease.token,
            "metrics": report.metrics,
            "transitions": len(report.transitions),
            "deliveries": len(report.deliveries),
        }
        ttl = int(max(60, 3 * self.settings.alert_interval))
        with contextlib.suppress(redis.RedisError):
            self.redis.set(status_key(self.keys), json.dumps(status), ex=ttl)

    # --- scheduling ------------------------------------------------------------------------

    def tick(self) -> None:
        """The scheduled job: one run; errors are logged, never raised into the scheduler."""
        try:
            self.evaluate_once()
        except StoreError as error:
            log.warning("alerts: store unavailable, evaluation skipped: %s", error)
        except Exception:
            log.exception("alerts: evaluation failed")

    def close(self) -> None:
        # Bounded: at exit, a run stuck on a slow receiver must not hold the process.
        locked = self._lock.acquire(timeout=5)
        try:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(redis.RedisError):
                self.lease.release()
            if self._own_http:
                self.http.close()
            if self._own_repo:
                self.repo.close()
            if self._own_redis:
                self.redis.close()
        finally:
            if locked:
                self._lock.release()


def _differs(before: RuleState, after: RuleState) -> bool:
    # The last value alone changes every run; it is saved with real changes only.
    return before.to_row() | {"last_value": None} != after.to_row() | {"last_value": None}


def build_message(
    rule: Rule, note: Notification, value: float | None, now: float, dashboard_url: str | None
) -> dict[str, Any]:
    """What a notification says, independent of channel (stored in the outbox row)."""
    resolved = note.kind == "resolve"
    return {
        "kind": note.kind,
        "status": "resolved" if resolved else "firing",
        "rule_id": rule.id,
        "rule_name": rule.name,
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.threshold,
        "clear_threshold": rule.clear_threshold,
        "for_seconds": rule.for_seconds,
        "severity": rule.severity,
        "value": value,
        "fingerprint": rule.fingerprint,
        "episode": note.episode,
        "starts_at": note.started_at,
        "ends_at": now if resolved else None,
        "at": now,
        "dashboard_url": _alerts_url(dashboard_url),
    }


def _alerts_url(base: str | None) -> str | None:
    return f"{base.rstrip('/')}/alerts" if base else None


def evaluate_once(
    settings: Settings, redis_client: redis.Redis, repo: Repo, now: float | None = None
) -> Report | None:
    """One run with fresh objects (as a newly started process would do), then let go."""
    evaluator = Evaluator(settings, redis_client, repo)
    try:
        return evaluator.evaluate_once(now)
    finally:
        evaluator.close()


# --- processes ------------------------------------------------------------------------------


def add_job(scheduler: Any, settings: Settings, *, seed: bool = True) -> Evaluator | None:
    """Add the evaluator to an APScheduler scheduler (the worker's, or the web's own).

    Returns None (and adds nothing) when no store is configured."""
    try:
        evaluator = Evaluator(settings, seed=seed)
    except ValueError as error:
        log.warning("alerts: evaluator not started: %s", error)
        return None
    from apscheduler.executors.pool import ThreadPoolExecutor

    # A thread of its own: a slow receiver never delays the host's other jobs.
    with contextlib.suppress(ValueError):  # already added
        scheduler.add_executor(ThreadPoolExecutor(1), EXECUTOR)
    scheduler.add_job(
        evaluator.tick,
        "interval",
        seconds=settings.alert_interval,
        id="auditq-alerts",
        name="alert evaluation",
        executor=EXECUTOR,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        replace_existing=True,
    )
    atexit.register(evaluator.close)  # hand the lease over at once on a clean exit
    return evaluator


def start_background(settings: Settings) -> Any:
    """Start the evaluator in a background thread of this process (the web process).

    Returns the running ``BackgroundScheduler`` (``.shutdown()`` stops it and releases the
    lease), or None when no store is configured."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(daemon=True)
    evaluator = add_job(scheduler, settings)
    if evaluator is None:
        return None
    scheduler.start()
    scheduler.auditq_evaluator = evaluator  # type: ignore[attr-defined]
    original_shutdown = scheduler.shutdown

    def shutdown(wait: bool = True) -> None:
        if scheduler.running:
            original_shutdown(wait=wait)
        evaluator.close()

    scheduler.shutdown = shutdown  # type: ignore[method-assign]
    return scheduler
