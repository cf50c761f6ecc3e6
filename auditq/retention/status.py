"""The last retention pass as the worker recorded it in Redis: for the dashboard's panel and
the alert metric ``retention_failing``."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from auditq.keys import Keys


def record(client: redis.Redis, prefix: str, outcome: dict[str, Any]) -> None:
    client.set(Keys(prefix).retention_pass, json.dumps({"at": time.time(), **outcome}))


def last_pass(client: redis.Redis, prefix: str) -> dict[str, Any] | None:
    raw = client.get(Keys(prefix).retention_pass)
    return json.loads(raw) if raw else None


def retention_failing(client: redis.Redis, prefix: str) -> float:
    """Alert metric: 1 when the last retention pass failed (destination unreachable, no
    DATABASE_URL, read-back mismatch), else 0 (also before any pass)."""
    last = last_pass(client, prefix)
    return 1.0 if last and last.get("error") else 0.0
