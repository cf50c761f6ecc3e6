"""What a notification says (independent of channel), and the outbox row that carries it.

The row's key is deterministic (rule, episode, kind, repeat number, channel), so whoever
writes the same notification again (an evaluator that died half-way, a rule deleted while
firing, a write-back after a store outage) adds nothing.
"""

from __future__ import annotations

from typing import Any

from auditq.alerts.rules import Notification, Rule


def build_message(
    rule: Rule, note: Notification, value: float | None, now: float, dashboard_url: str | None
) -> dict[str, Any]:
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
        "dashboard_url": f"{dashboard_url.rstrip('/')}/alerts" if dashboard_url else None,
    }


def outbox_row(
    rule: Rule,
    note: Notification,
    channel: dict[str, Any],
    value: float | None,
    now: float,
    dashboard_url: str | None,
) -> dict[str, Any]:
    message = build_message(rule, note, value, now, dashboard_url)
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
