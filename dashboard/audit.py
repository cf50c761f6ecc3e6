"""The dashboard's own admin actions go to the audit log, like any other producer's events.

They are ``critical``: written straight to the store, queued if that fails, never dropped
when the queue is full (which is exactly when an operator requeues or discards).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any

from flask import g, request

from auditq.client import AuditUnavailable, LogResult
from dashboard.resources import resources

log = logging.getLogger(__name__)


def record(
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    outcome: str = "success",
) -> LogResult | None:
    """Log one admin action (``auditq.<thing>.<verb>``) by the current dashboard user.

    Returns None if it could be neither written nor queued; the action itself has already
    happened, so this is logged loudly rather than turned into an error page.
    """
    event: dict[str, Any] = {
        "action": action,
        "category": "critical",
        "actor_type": "dashboard",
        "actor_id": getattr(g, "role", None) or "unknown",
        "target_type": target_type,
        "target_id": target_id,
        "outcome": outcome,
        # A header is attacker-chosen: a NUL would make the event invalid and the action a 500.
        "user_agent": request.user_agent.string.replace("\x00", "")[:1024] or None,
        "metadata": metadata or {},
    }
    with contextlib.suppress(ValueError):  # not an IP (e.g. a unix socket): leave it out
        event["ip"] = str(ipaddress.ip_address(request.remote_addr or ""))
    try:
        return resources().audit.log(**event)
    except AuditUnavailable:
        log.error("admin action %s could not be audit-logged: store and Redis both failed", action)
        return None
