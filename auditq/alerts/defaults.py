"""The rules a new install starts with (seeded once; an operator may edit or delete them).

They have no channels: nothing is sent until an operator adds one. Seeding is idempotent
(each rule has a ``seed_key``) and happens once per rule and database: a marker row in
``alert_meta`` lists the keys seeded, so a deleted default rule stays deleted and a default
added by a later release ("Redis unreachable") still reaches an existing install.
"""

from __future__ import annotations

from typing import Any

from auditq.alerts.repo import Repo
from auditq.alerts.tables import META, RULES

SEEDED_MARKER = "default_rules_seeded"

DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {
        "seed_key": "queue_length",
        "name": "Queue length above 5,000",
        "metric": "queue_length",
        "op": ">",
        "threshold": 5000,
        "clear_threshold": 4000,
        "for_seconds": 0,
        "severity": "error",
        "no_data": "keep",
    },
    {
        "seed_key": "no_live_worker",
        "name": "No live worker for 30 s",
        "metric": "workers_alive",
        "op": "<",
        "threshold": 1,
        "for_seconds": 30,
        "severity": "critical",
        "no_data": "keep",
    },
    {
        "seed_key": "failed_batches",
        "name": "Failed batches",
        "metric": "failed_batches_per_minute",
        "op": ">",
        "threshold": 0,
        "for_seconds": 0,
        "severity": "error",
        "no_data": "keep",
    },
    {
        "seed_key": "drops",
        "name": "Audit events dropped",
        "metric": "drops_per_minute",
        "op": ">",
        "threshold": 0,
        "for_seconds": 0,
        "severity": "critical",
        "no_data": "keep",
    },
    {
        # Evaluated by whichever process leads without Redis (a lease row in the store).
        "seed_key": "redis_down",
        "name": "Redis unreachable",
        "metric": "redis_up",
        "op": "<",
        "threshold": 1,
        "for_seconds": 15,
        "severity": "critical",
        "no_data": "keep",
    },
    {
        "seed_key": "verify_findings",
        "name": "Seal verify found tampering",
        "metric": "verify_findings",
        "op": ">",
        "threshold": 0,
        "for_seconds": 0,
        "severity": "critical",
        "no_data": "keep",
    },
    {
        "seed_key": "unsealed_age",
        "name": "Rows unsealed for over 10 minutes",
        "metric": "unsealed_age_seconds",
        "op": ">",
        "threshold": 600,
        "for_seconds": 0,
        "severity": "warning",
        "no_data": "keep",
    },
    {
        "seed_key": "reconcile_gap",
        "name": "Events left the queue unaccounted",
        "metric": "reconcile_gap",
        "op": ">",
        "threshold": 0,
        "for_seconds": 0,
        "severity": "critical",
        "no_data": "keep",
    },
    # What the audit log says (auditq.alerts.content). The actions are the conventional names
    # auditq's README uses; an app that logs other names edits the match.
    {
        "seed_key": "admin_granted",
        "name": "Admin role granted",
        "kind": "event",
        "match": {"action": "role.grant", "metadata.role": ["admin", "owner"]},
        "severity": "critical",
    },
    {
        "seed_key": "failed_logins",
        "name": "More than 20 failed logins from one IP in 5 minutes",
        "kind": "event_rate",
        "match": {"action": "login.failed"},
        "group_by": "ip",
        "window_seconds": 300,
        "op": ">",
        "threshold": 20,
        "clear_threshold": 5,
        "severity": "error",
    },
    {
        "seed_key": "ban_lifted",
        "name": "A ban lifted",
        "kind": "event",
        "match": {"action": ["user.unban", "ban.lift"]},
        "severity": "warning",
    },
)
# One shape for every row of a batch insert (metric and event rules name different fields).
COLUMNS = tuple(dict.fromkeys(name for rule in DEFAULT_RULES for name in rule))
DEFAULT_VALUES: dict[str, Any] = {"kind": "metric", "for_seconds": 0, "no_data": "keep"}
# Seeded by releases before the marker listed its keys (its value was {"rules": 4}).
_FIRST_RELEASE = ("queue_length", "no_live_worker", "failed_batches", "drops")


def seed_defaults(repo: Repo) -> int:
    """Add the default rules this database has not had yet; return how many were added."""
    marker = repo.get(META, SEEDED_MARKER, key="key")
    seeded = set(_FIRST_RELEASE) if marker else set()
    if marker:
        seeded.update((marker.get("value") or {}).get("keys") or ())
    new = [rule for rule in DEFAULT_RULES if rule["seed_key"] not in seeded]
    if not new:
        return 0
    rows = [
        {name: rule.get(name, DEFAULT_VALUES.get(name)) for name in COLUMNS} | {"channel_ids": []}
        for rule in new
    ]
    added = repo.insert_ignore(RULES, rows, "seed_key")
    keys = sorted(seeded | {rule["seed_key"] for rule in new})
    repo.upsert(META, {"key": SEEDED_MARKER, "value": {"keys": keys}}, "key")
    return added
