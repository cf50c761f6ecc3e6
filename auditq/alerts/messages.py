"""What a notification says (independent of channel), and the outbox row that carries it.

The row's key is deterministic (rule, episode, kind, repeat number, channel), so whoever
writes the same notification again (an evaluator that died half-way, a rule deleted while
firing, a write-back after a store outage) adds nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from auditq.alerts.rules import Notification, Rule, fingerprint


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


def content_message(
    rule: Rule,
    note: Notification,
    value: float | None,
    now: float,
    dashboard_url: str | None,
    *,
    event: dict[str, Any] | None = None,
    group: str | None = None,
    seal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A content rule's message: the event it is about, the group value over the rate, or
    the seal head to keep."""
    message = build_message(rule, note, value, now, dashboard_url)
    message["metric"] = rule.kind
    if event is not None:
        fields = ("id", "action", "actor_type", "actor_id", "target_type", "target_id")
        message["event"] = {name: event.get(name) for name in (*fields, "occurred_at")}
        message["fingerprint"] = fingerprint(f"{rule.id}:{event['id']}")
        message |= {"op": "=", "threshold": 1}
        who = event.get("actor_id") or "unknown actor"
        target = " ".join(filter(None, (event.get("target_type"), event.get("target_id"))))
        target = f" on {target}" if target else ""
        message["summary"] = f"{event['action']} by {who}{target} at {event.get('occurred_at')}"
        if dashboard_url:
            query = urlencode({"action": event["action"], "actor_id": event.get("actor_id") or ""})
            message["event_url"] = f"{dashboard_url.rstrip('/')}/explorer/?{query}"
    if group is not None:
        message["group_by"] = rule.group_by
        message["group"] = group
        message["fingerprint"] = fingerprint(f"{rule.id}:{rule.group_by}={group}")
        message["summary"] = (
            f"{_count(value)} matching events in {rule.window_seconds} s from"
            f" {rule.group_by}={group} (rule: {rule.op} {_count(rule.threshold)})"
        )
    if seal is not None:
        message["seal"] = seal
        message["fingerprint"] = fingerprint(f"{rule.id}:seal:{seal['seal_no']}")
        message |= {"op": "=", "threshold": seal["seal_no"], "value": seal["seal_no"]}
        message["summary"] = (
            f"seal #{seal['seal_no']} head {seal['hash']} signature {seal['signature']}"
            f" (key {seal['public_key']}, {seal['rows_sealed']} rows sealed, {seal['sealed_at']})"
        )
    return message


def _count(value: float | None) -> str:
    return "no" if value is None else f"{value:g}"


def outbox_row(
    rule: Rule,
    note: Notification,
    channel: dict[str, Any],
    value: float | None,
    now: float,
    dashboard_url: str | None,
    *,
    message: dict[str, Any] | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """``message`` and ``key`` (without the channel) default to a metric rule's."""
    message = dict(message or build_message(rule, note, value, now, dashboard_url))
    message["channel_name"] = channel["name"]
    key = key or f"{rule.id}:{note.episode}:{note.kind}:{note.seq}"
    return {
        "key": f"{key}:{channel['id']}",
        "rule_id": rule.id,
        "channel_id": channel["id"],
        "kind": note.kind,
        "message": message,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
