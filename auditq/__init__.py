"""auditq: audit events off the request path, into Supabase, with nothing lost.

Start at ``auditq.client.AuditClient`` (where an event enters; ``AsyncAuditClient`` for
asyncio), then ``auditq.queue`` (the Redis stream), ``worker`` (the drain) and
``auditq.stores`` (where it lands).
"""

from auditq.async_client import AsyncAuditClient
from auditq.client import AuditClient, AuditUnavailable, LogResult
from auditq.events import AuditEvent, EventError

__all__ = [
    "AsyncAuditClient",
    "AuditClient",
    "AuditEvent",
    "AuditUnavailable",
    "EventError",
    "LogResult",
]
