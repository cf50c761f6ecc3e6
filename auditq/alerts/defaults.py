"""The rules a new install starts with (seeded once; an operator may edit or delete them).

They have no channels: nothing is sent until an operator adds one. Seeding is idempotent
(each rule has a ``seed_key``) and happens once per database: a marker row in
``alert_meta`` records it, so a deleted default rule stays deleted.
"""

from __future__ import annotations

from typing import Any

from auditq.alerts.repo import Repo

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
)


def seed_defaults(repo: Repo) -> int:
    """Add the default rules unless this database was seeded before; return how many."""
    if repo.get("alert_meta", SEEDED_MARKER, key="key") is not None:
        return 0
    added = repo.insert_ignore(
        "alert_rules",
        [{"clear_threshold": None, **rule, "channel_ids": []} for rule in DEFAULT_RULES],
        "seed_key",
    )
    repo.insert_ignore(
        "alert_meta", [{"key": SEEDED_MARKER, "value": {"rules": len(DEFAULT_RULES)}}], "key"
    )
    return added
