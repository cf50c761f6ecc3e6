"""Worker liveness as the dashboard, /metrics and the API show it.

The heartbeat contract lives in the core (``auditq.heartbeat``); this module only orders its
reader's answer for people, so the dashboard and the alerts never disagree about "alive".
"""

from __future__ import annotations

import time
from typing import Any

import redis

from auditq.heartbeat import list_workers as read
from auditq.keys import Keys


def list_workers(
    client: redis.Redis, keys: Keys, ttl: float, now: float | None = None
) -> list[dict[str, Any]]:
    """Workers with a heartbeat record (bounded), alive ones first, then by id.

    ``ttl`` is the workers' AUDITQ_HEARTBEAT_TTL: older than that, a worker is stale.
    """
    workers = read(client, keys, time.time() if now is None else now, ttl=ttl)
    return sorted(workers, key=lambda w: (w["status"] != "alive", w["id"]))
