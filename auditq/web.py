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
from typing import Any, Generic, TypeVar

from auditq.config import load_settings
from auditq.events import AuditEvent
from auditq.tokens import Actor, TokenVerifier

REQUEST_ID_HEADER = "X-Request-Id"
Client = TypeVar("Client")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_USER_AGENT_MAX = 1024  # AuditEvent.user_agent's limit


class Integration(Generic[Client]):
    """What ``auditq.flask.Audit`` and ``auditq.fastapi.Audit`` hold: a client and a verifier.

    Both are made on first use (``from_env``, the settings), so creating the extension
    touches no server, and an async client is made on the loop that serves requests.
    """

    client_class: Any  # AuditClient or AsyncAuditClient

    def __init__(
        self,
        app: Any = None,
        *,
        client: Client | None = None,
        verifier: TokenVerifier | None = None,
    ):
        self._client = client
        self._verifier = verifier
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        raise NotImplementedError

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self.client_class.from_env()
        return self._client

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            self._verifier = TokenVerifier.from_settings(load_settings())
        return self._verifier


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
