"""The outbox: notifications are written to the store first, then sent, then marked.

A row is written together with the state change that caused it (same evaluation, before
the state is saved; its key is deterministic, so writing it twice is harmless). Delivery
takes due rows oldest first and makes one attempt each:

- 2xx (SMTP 250): ``sent``.
- network errors, timeouts, 429 and 5xx (SMTP 4xx): retried later, after
  ``Retry-After`` when the receiver sent one, else a capped exponential backoff
  (2 s, 4 s, 8 s, ... up to ``AUDITQ_ALERT_RETRY_MAX``), until ``AUDITQ_ALERT_MAX_ATTEMPTS``.
- any other 4xx (SMTP 5xx): not retried, ``failed``.

Every attempt is written to the history. For one rule and channel, a row waits while an
older one is still pending, so a resolve never overtakes its trigger.

While the store is down, sending does not wait for it: new rows are kept in memory
(``offline``) and delivered from there, and status changes the store did not take are kept
too (``unsaved``). When it answers again both are written back first: offline rows by
their key (a row that reached the store after all is then marked, not sent again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from auditq.alerts import channels as channel_kinds
from auditq.alerts.memory import Journal
from auditq.alerts.notifiers import Link, Outcome
from auditq.alerts.repo import Repo, Row
from auditq.alerts.rules import EPSILON
from auditq.alerts.tables import OUTBOX
from auditq.config import Settings
from auditq.stores import DataRejected, StoreError

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 3600.0


def backoff(attempts: int, cap: float, base: float = 2.0) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base * 2^(n-1), capped."""
    return min(cap, base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Delivery:
    outbox_id: str
    channel_id: str | None
    kind: str
    status: str  # sent | retrying | failed
    attempts: int
    detail: str


class Outbox:
    def __init__(self, repo: Repo, http: httpx.Client, journal: Journal, settings: Settings):
        self.repo = repo
        self.journal = journal
        self.link = Link(http, settings.alert_http_timeout, settings.alert_allow_private)
        self.max_attempts = settings.alert_max_attempts
        self.retry_max = settings.alert_retry_max
        self.offline: dict[str, Row] = {}  # key -> a row the store has not taken yet
        self.unsaved: dict[str, dict[str, Any]] = {}  # row id -> changes not yet written

    def enqueue(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write notifications (idempotent on ``key``); held in memory if the store is down."""
        try:
            self.repo.insert_ignore(OUTBOX, list(rows), on_conflict="key")
        except StoreError as error:
            log.warning("alerts: store unavailable, %d notification(s) held: %s", len(rows), error)
            for row in rows:
                self.offline.setdefault(row["key"], dict(row))

    def deliver_due(
        self,
        now: float,
        channels: Mapping[str, Row],
        *,
        limit: int = 50,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> list[Delivery]:
        try:
            self._write_back()
            pending = self.repo.list(
                OUTBOX, [("status", "eq", "pending")], order="created_at", limit=500
            )
        except StoreError:
            pending = [row for row in self.offline.values() if row["status"] == "pending"]
        pending.sort(key=lambda r: (r["created_at"], r["key"]))
        blocked: set[tuple[Any, Any]] = set()
        done: list[Delivery] = []
        for row in pending:
            lane = (row.get("rule_id") or row["message"].get("rule_id"), row.get("channel_id"))
            if lane in blocked:
                continue
            if row["next_attempt_at"] > now + EPSILON:
                blocked.add(lane)  # later rows of this rule and channel wait for it
                continue
            if len(done) >= limit or not keep_going():
                break
            delivery = self._attempt(row, channels.get(row.get("channel_id") or ""), now)
            if delivery.status == "retrying":
                blocked.add(lane)
            done.append(delivery)
        return done

    def _write_back(self) -> None:
        """What the store missed while it was down; raises StoreError if it still is."""
        for row_id, changes in list(self.unsaved.items()):
            self.repo.update(OUTBOX, row_id, changes)
            del self.unsaved[row_id]
        for key, row in list(self.offline.items()):
            try:
                self.repo.insert_ignore(OUTBOX, [row], on_conflict="key")
                if row["status"] != "pending" or row["attempts"]:
                    changes = {k: row.get(k) for k in _PROGRESS}
                    self.repo.update(OUTBOX, key, changes, key="key")
            except DataRejected as error:  # its rule or channel was deleted meanwhile
                log.warning("alerts: held notification dropped: %s", error)
            del self.offline[key]

    def _attempt(self, row: Row, channel: Mapping[str, Any] | None, now: float) -> Delivery:
        attempts = row["attempts"] + 1
        if channel is None or not channel.get("enabled", True):
            outcome = Outcome(ok=False, detail="channel deleted or disabled")
        else:
            try:
                outcome = channel_kinds.send(channel, row["message"], self.link)
            except Exception as error:  # a bug in a notifier must not stop the others
                log.exception("notifier %s failed", channel.get("kind"))
                outcome = Outcome(ok=False, detail=f"error: {type(error).__name__}")
        changes: dict[str, Any] = {"attempts": attempts, "last_error": None}
        if outcome.ok:
            status = "sent"
            changes.update(status="sent", sent_at=now)
        elif outcome.retryable and attempts < self.max_attempts:
            status = "retrying"
            wait = backoff(attempts, self.retry_max)
            if outcome.retry_after is not None:
                wait = min(max(outcome.retry_after, 0.0), MAX_RETRY_AFTER)
            changes.update(next_attempt_at=now + wait, last_error=outcome.detail)
        else:
            status = "failed"
            changes.update(status="failed", last_error=outcome.detail)
        self._save(row, changes)
        message = row["message"]
        self.journal.record(
            {
                "happened_at": now,
                "event": "delivery",
                "rule_id": message.get("rule_id"),
                "rule_name": message.get("rule_name"),
                "channel_id": row.get("channel_id"),
                "channel_name": (channel or {}).get("name") or message.get("channel_name"),
                "kind": row["kind"],
                "status": status,
                "attempts": attempts,
                "value": message.get("value"),
                "detail": outcome.detail[:500],
            }
        )
        if status != "sent":
            log.warning(
                "alert %s to channel %s: %s (attempt %d)",
                row["kind"],
                (channel or {}).get("name"),
                outcome.detail,
                attempts,
            )
        return Delivery(
            row.get("id") or row["key"],
            row.get("channel_id"),
            row["kind"],
            status,
            attempts,
            outcome.detail,
        )

    def _save(self, row: Row, changes: dict[str, Any]) -> None:
        if row["key"] in self.offline:
            self.offline[row["key"]].update(changes)
            return
        try:
            self.repo.update(OUTBOX, row["id"], changes)
        except StoreError:
            self.unsaved[row["id"]] = self.unsaved.get(row["id"], {}) | changes


# What an attempt changes on a row (written back by key after an outage).
_PROGRESS = ("status", "attempts", "next_attempt_at", "last_error", "sent_at")
