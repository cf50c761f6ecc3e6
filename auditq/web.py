"""What the Flask and FastAPI integrations share: the event fields a request supplies.

A request gives an event its actor (``auditq.tokens``), ip, user agent and request id; the
caller's own arguments override each of them. Everything taken from headers is attacker
controlled, so it is bounded here rather than allowed to make ``log()`` raise mid-request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from ipaddress import ip_address
from typing import Any

from auditq.events import AuditEvent
from auditq.tokens import Actor

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_USER_AGENT_MAX = 1024  # AuditEvent.user_agent's limit


def request_id(header: str | None) -> str:
    """The caller's X-Request-Id if it is a sane token, else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def request_fields(
    actor: Actor, ip: str | None, user_agent: str | None, request_id: str
) -> dict[str, Any]:
    """The fields a request contributes to each event logged while it is handled."""
    fields = actor.fields()
    fields["request_id"] = request_id
    if ip and _is_ip(ip):
        fields["ip"] = ip
    if user_agent:
        fields["user_agent"] = user_agent.replace("\x00", "")[:_USER_AGENT_MAX]
    return fields


def merged(context: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The request's fields under the caller's: explicit arguments win, metadata merges."""
    out = {**context, **fields}
    if "metadata" in context and isinstance(fields.get("metadata", {}), dict):
        out["metadata"] = {**context["metadata"], **(fields.get("metadata") or {})}
    return out


def with_context(
    context: dict[str, Any], events: Iterable[dict[str, Any] | AuditEvent]
) -> list[dict[str, Any] | AuditEvent]:
    """``merged`` for each dict of a log_many call; an ``AuditEvent`` stays as built."""
    return [e if isinstance(e, AuditEvent) else merged(context, e) for e in events]


def route_fields(method: str, route: str, status: int) -> dict[str, Any]:
    """What route auditing records of a request (besides the request's own fields)."""
    outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
    return {
        "outcome": outcome,
        "metadata": {"method": method, "route": route, "status": status},
    }


def _is_ip(value: str) -> bool:
    # A misconfigured proxy chain can hand over anything as the client address.
    try:
        ip_address(value)
    except ValueError:
        return False
    return True
