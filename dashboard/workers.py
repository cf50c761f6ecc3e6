"""Worker liveness as the dashboard, /metrics and the API show it.

The heartbeat format belongs to the worker (``worker/heartbeat.py``); this module only
calls its reader, so the two never disagree about what "alive" means.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from auditq.keys import Keys
from worker.heartbeat import list_workers as read


def list_workers(
    client: redis.Redis, keys: Keys, ttl: float, now: float | None = None
) -> list[dict[str, Any]]:
    """Workers with a heartbeat record (bounded), alive ones first, then by id.

    ``ttl`` is the workers' AUDITQ_HEARTBEAT_TTL: older than that, a worker is stale.
    """
    workers = read(client, keys, time.time() if now is None else now, ttl=ttl)
    return sorted(workers, key=lambda w: (w.get("status") != "alive", str(w.get("id"))))
