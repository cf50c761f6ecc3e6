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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from auditq.alerts import notifiers
from auditq.alerts.repo import Repo, rows_by
from auditq.alerts.rules import EPSILON

log = logging.getLogger(__name__)

OUTBOX = "alert_outbox"
HISTORY = "alert_history"
MAX_RETRY_AFTER = 3600.0


def backoff(attempts: int, cap: float, base: float = 2.0) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base * 2^(n-1), capped."""
    return min(cap, base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Delivery:
    outbox_id: str
    channel_id: str
    kind: str
    status: str  # sent | retrying | failed
    attempts: int
    detail: str


class Outbox:
    def __init__(
        self,
        repo: Repo,
        http: httpx.Client,
        *,
        timeout: float = 10.0,
        max_attempts: int = 12,
        retry_max: float = 300.0,
    ):
        self.repo = repo
        self.http = http
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_max = retry_max

    def enqueue(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write notifications (idempotent on ``key``); return how many were new."""
        return self.repo.insert_ignore(OUTBOX, list(rows), on_conflict="key")

    def deliver_due(
        self, now: float, *, limit: int = 50, keep_going: Callable[[], bool] = lambda: True
    ) -> list[Delivery]:
        pending = self.repo.list(
            OUTBOX, [("status", "eq", "pending")], order="created_at", limit=500
        )
        pending.sort(key=lambda r: (r["created_at"], r["key"]))
        channels: dict[str, dict[str, Any]] | None = None
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
            if channels is None:
                channels = rows_by(self.repo.list("alert_channels"))
            delivery = self._attempt(row, channels.get(row.get("channel_id") or ""), now)
            if delivery.status == "retrying":
                blocked.add(lane)
            done.append(delivery)
        return done

    def _attempt(self, row: dict[str, Any], channel: dict[str, Any] | None, now: float) -> Delivery:
        attempts = row["attempts"] + 1
        if channel is None or not channel.get("enabled", True):
            outcome = notifiers.Outcome(ok=False, detail="channel deleted or disabled")
        else:
            try:
                outcome = notifiers.send(channel, row["message"], self.http, self.timeout)
            except Exception as error:  # a bug in a notifier must not stop the others
                log.exception("notifier %s failed", channel.get("kind"))
                outcome = notifiers.Outcome(ok=False, detail=f"error: {type(error).__name__}")
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
        self.repo.update(OUTBOX, row["id"], changes)
        message = row["message"]
        self.repo.insert(
            HISTORY,
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
            },
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
            row["id"], row.get("channel_id"), row["kind"], status, attempts, outcome.detail
        )
