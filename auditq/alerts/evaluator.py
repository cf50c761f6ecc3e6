"""The evaluator: every few seconds, read the metrics, step every rule, record state changes
and their notifications, then deliver what is due.

It runs in every web process (a ``BackgroundScheduler`` that ``create_app`` starts, unless
``AUDITQ_ALERTS_IN_WEB=false``) and in every worker process (a job in the worker's
scheduler), because it must keep working when every worker is dead. ``lease.Leadership``
picks one of them, also while Redis or the store is down; if the leader dies, another
process takes over at most ``AUDITQ_ALERT_LEASE`` seconds later.

It must also keep working while the store or Redis is down, since those outages are what
it watches: rules, channels and state come from ``memory`` when the store does not answer,
notifications wait in the outbox's memory, and all of it is written back after recovery.

Writes per evaluation, in this order: outbox rows (deterministic keys), history, then the
rules' states. An evaluator that dies in between re-creates the same outbox rows on the next
run (ignored), so a notification is never lost and never written twice.

``Evaluator.evaluate_once(now=...)`` takes the time as an argument, so tests drive the
clock; the scheduled job passes the real time.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import redis

from auditq.alerts import metrics as metrics_mod
from auditq.alerts.content import ContentRules
from auditq.alerts.defaults import seed_defaults
from auditq.alerts.lease import Leadership, StoreLease
from auditq.alerts.memory import Config, Journal, LastKnown, StateBook
from auditq.alerts.messages import content_message, outbox_row
from auditq.alerts.outbox import Delivery, Outbox
from auditq.alerts.repo import FailFast, Repo, open_repo
from auditq.alerts.rules import Rule, RuleState, reset, silenced_rule_ids, step
from auditq.alerts.tables import HISTORY, OUTBOX
from auditq.config import Settings
from auditq.keys import Keys
from auditq.lease import RedisLease, holder_token
from auditq.queue import connect
from auditq.scheduling import every
from auditq.seals import status as seal_status
from auditq.stores import Store, StoreError, open_store

log = logging.getLogger(__name__)

LEASE_NAME = "alerts"
EXECUTOR = "auditq-alerts"
PRUNE_EVERY = 3600.0
HISTORY_DAYS = 30
OUTBOX_DAYS = 7


@dataclass
class Report:
    now: float
    metrics: dict[str, float | None]
    store_up: bool = True
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
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
        # Every store call of a run goes through one breaker (see FailFast).
        self._breaker = FailFast(repo)
        self.repo = cast(Repo, self._breaker)
        self._own_http = http is None
        self.http = http or httpx.Client(follow_redirects=False)
        # The lease must outlive a run (with its deliveries) and the gap to the next one.
        ttl = max(settings.alert_lease, 2 * settings.alert_interval + 1)
        token = token or holder_token()
        self.leader = Leadership(
            RedisLease(self.redis, self.keys.lock(LEASE_NAME), ttl, token),
            StoreLease(self.repo, LEASE_NAME, ttl, token),
        )
        self.content = ContentRules(self.repo)
        self.config = LastKnown(self.repo, self.redis, self.keys)
        self.states = StateBook(self.repo, self.redis, self.keys.alerts_states)
        self.journal = Journal(self.repo)
        self.outbox = Outbox(self.repo, self.http, self.journal, settings)
        self.seed = seed
        self._store: Store | None = None  # opened on first use (see _sealed_store)
        self._pruned_at: float | None = None
        self._lock = threading.Lock()
        self._closed = False

    # --- one run ---------------------------------------------------------------------------

    def evaluate_once(self, now: float | None = None) -> Report | None:
        """One evaluation if this process leads; None if another one does (or, just after a
        start with the store down and no copy in Redis, nothing is known yet)."""
        with self._lock:
            self._breaker.reset()
            if not self.leader.acquire():
                return None
            now = time.time() if now is None else now
            if self.seed:
                self._seed()
            config = self.config.read(now)
            if config is None:
                log.warning("alerts: no rules known yet (store and its Redis copy unavailable)")
                return None
            report = self._evaluate(config, now)
            report.deliveries = self.outbox.deliver_due(
                now, config.channels, keep_going=self.leader.acquire
            )
            self.journal.flush()
            self._prune(now)
            self._publish(report)
            return report

    def _seed(self) -> None:
        try:
            added = seed_defaults(self.repo)
        except StoreError as error:
            log.debug("alerts: default rules not seeded yet: %s", error)
            return
        self.seed = False
        if added:
            log.info("alerts: seeded %d default rules", added)

    def _evaluate(self, config: Config, now: float) -> Report:
        values = metrics_mod.collect(
            self.redis, self.keys, self.settings.heartbeat_ttl, now, self.settings.shards
        )
        values |= metrics_mod.store_metrics(self._sealed_store())
        report = Report(now, values, store_up=config.from_store)
        silenced = silenced_rule_ids(config.silences, now)
        self.states.refresh()
        rules = config.rule_objects()
        targets = {
            rule.id: [
                config.channels[c]
                for c in rule.channel_ids
                if config.channels.get(c, {}).get("enabled")
            ]
            for rule in rules
        }
        can_notify = {rule.id: bool(targets[rule.id]) and rule.id not in silenced for rule in rules}
        for rule in rules:
            if rule.kind != "metric":
                continue
            before = self.states.get(rule.id)
            value = values.get(rule.metric or "")
            if rule.enabled:
                result = step(rule, before, value, now, can_notify[rule.id])
            else:
                result = reset(rule, before, now)
            rows = [
                outbox_row(rule, note, channel, value, now, self.settings.public_url)
                for note in result.notifications
                for channel in targets[rule.id]
            ]
            if rows:
                self.outbox.enqueue(rows)
            self._record(report, rule, before, result.state, value, now)
        content = [rule for rule in rules if rule.kind != "metric"]
        self._evaluate_content(report, content, targets, can_notify, now)
        self.journal.flush()
        self.states.save({rule.id for rule in rules})
        return report

    def _audit(self) -> Store | None:
        """The audit log's store, opened on first use (None if the settings name none)."""
        if self._store is None:
            self._store = open_store(self.settings, timeout=self.settings.store_timeout)
        return self._store

    def _seal_head(self) -> dict[str, Any] | None:
        store = self._audit()
        return None if store is None else seal_status.head(store)

    def _sealed_store(self) -> Store | None:
        """The audit store, when its rows are sealed (without a seal key nothing ever is, and
        the age of the oldest unsealed row would only grow)."""
        return None if self.settings.seal_key is None else self._audit()

    def _record(
        self,
        report: Report,
        rule: Rule,
        before: RuleState,
        after: RuleState,
        value: float | None,
        now: float,
        group: str | None = None,
    ) -> None:
        """Journal a state change, and keep the rule's new state (``group``: a rate rule's
        group value, whose state lives inside the rule's)."""
        name = rule.name if group is None else f"{rule.name} [{rule.group_by}={group}]"
        if after.state != before.state:
            report.transitions.append((name, before.state, after.state))
            self.journal.record(
                {
                    "happened_at": now,
                    "event": "state",
                    "rule_id": rule.id,
                    "rule_name": name,
                    "from_state": before.state,
                    "to_state": after.state,
                    "value": value,
                    "detail": rule.describe(),
                }
            )
            log.info("alert %r: %s -> %s (value %s)", name, before.state, after.state, value)
        if group is None:
            self.states.put(rule.id, after, now, changed=_differs(before, after))

    def _evaluate_content(
        self,
        report: Report,
        rules: list[Rule],
        targets: dict[str, list[dict[str, Any]]],
        can_notify: dict[str, bool],
        now: float,
    ) -> None:
        """Event and rate rules (``content``); skipped while the store does not answer (they
        read the audit log), and caught up on the next run that it does."""
        states = {rule.id: self.states.get(rule.id) for rule in rules}
        try:
            outcome = self.content.evaluate(
                rules, states, can_notify, now, seal_head=self._seal_head
            )
        except StoreError as error:
            log.warning("alerts: event rules skipped this run, store unavailable: %s", error)
            return
        rows = [
            outbox_row(
                hit.rule,
                hit.note,
                channel,
                hit.value,
                now,
                self.settings.public_url,
                message=content_message(
                    hit.rule,
                    hit.note,
                    hit.value,
                    now,
                    self.settings.public_url,
                    event=hit.event,
                    group=hit.group,
                    seal=hit.seal,
                ),
                key=hit.key,
            )
            for hit in outcome.hits
            for channel in targets[hit.rule.id]
        ]
        if rows:
            self.outbox.enqueue(rows)
        for rule, group, before, after in outcome.transitions:
            self._record(report, rule, before, after, after.last_value, now, group)
        for rule in rules:
            if rule.id in outcome.states:
                before = states[rule.id]
                self._record(report, rule, before, outcome.states[rule.id], None, now)
        if outcome.watermark is not None:
            try:
                self.content.save_watermark(outcome.watermark)
            except StoreError as error:  # the events come back next run; their keys dedup
                log.warning("alerts: event watermark not saved: %s", error)

    def _prune(self, now: float) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            self.repo.delete_where(HISTORY, [("happened_at", "lt", now - HISTORY_DAYS * 86400)])
            for status in ("sent", "failed"):
                self.repo.delete_where(
                    OUTBOX,
                    [("status", "eq", status), ("created_at", "lt", now - OUTBOX_DAYS * 86400)],
                )
        except StoreError as error:
            log.warning("alerts: pruning old history failed: %s", error)

    def _publish(self, report: Report) -> None:
        status = {
            "at": report.now,
            "holder": self.leader.token,
            "metrics": report.metrics,
            "store_up": report.store_up,
            "transitions": len(report.transitions),
            "deliveries": len(report.deliveries),
        }
        ttl = int(max(60, 3 * self.settings.alert_interval))
        with contextlib.suppress(redis.RedisError):
            self.redis.set(self.keys.alerts_status, json.dumps(status), ex=ttl)

    # --- scheduling ------------------------------------------------------------------------

    def tick(self) -> None:
        """The scheduled job: one run; errors are logged, never raised into the scheduler."""
        try:
            self.evaluate_once()
        except Exception:
            log.exception("alerts: evaluation failed")

    def close(self) -> None:
        # Bounded: at exit, a run stuck on a slow receiver must not hold the process.
        locked = self._lock.acquire(timeout=5)
        try:
            if self._closed:
                return
            self._closed = True
            self.leader.release()
            if self._own_http:
                self.http.close()
            if self._own_repo:
                self.repo.close()
            if self._store is not None:
                self._store.close()
            if self._own_redis:
                self.redis.close()
        finally:
            if locked:
                self._lock.release()


def _differs(before: RuleState, after: RuleState) -> bool:
    # The last value alone changes every run; it is saved with real changes only.
    return before.to_row() | {"last_value": None} != after.to_row() | {"last_value": None}


# --- processes ------------------------------------------------------------------------------


def add_job(scheduler: Any, settings: Settings, *, seed: bool = True) -> Evaluator | None:
    """Add the evaluator to an APScheduler scheduler (the worker's, or the web's own).

    Returns None (and adds nothing) when no store is configured."""
    try:
        evaluator = Evaluator(settings, seed=seed)
    except ValueError as error:
        log.warning("alerts: evaluator not started: %s", error)
        return None
    every(
        scheduler,
        EXECUTOR,
        evaluator.tick,
        settings.alert_interval,
        id="auditq-alerts",
        name="alert evaluation",
        replace_existing=True,
    )
    atexit.register(evaluator.close)  # hand the lease over at once on a clean exit
    return evaluator


class Background:
    """The evaluator on a background thread of this process (the web process)."""

    def __init__(self, settings: Settings):
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(daemon=True)
        self.evaluator = add_job(self.scheduler, settings)

    def start(self) -> Background | None:
        """Started, or None (nothing to run) when no store is configured."""
        if self.evaluator is None:
            return None
        self.scheduler.start()
        return self

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the job and release the lease."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        if self.evaluator is not None:
            self.evaluator.close()


def start_background(settings: Settings) -> Background | None:
    return Background(settings).start()
