"""Login attempts per client IP: a fixed-window counter in Redis (INCR + EXPIRE).

No library: one counter on one route is two Redis commands, and Flask-Limiter would bring
its own storage layer and configuration for that. Every gunicorn worker and dyno shares the
count through Redis. While Redis is unreachable the count falls back to this process's
memory, so the dashboard can still be logged into (it is needed most when things are
broken) without giving up the limit.
"""

from __future__ import annotations

import threading
import time

import redis

LOGIN_LIMIT = 10
LOGIN_WINDOW = 300  # seconds


class FixedWindow:
    def __init__(self, client: redis.Redis, prefix: str, limit: int, window: int):
        self.redis = client
        self.prefix = prefix
        self.limit = limit
        self.window = window
        self._local: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def hit(self, who: str, now: float | None = None) -> bool:
        """Count one attempt; False when ``who`` is over the limit in this window."""
        slot = int((time.time() if now is None else now) // self.window)
        key = f"{self.prefix}:ratelimit:login:{slot}:{who}"
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, self.window + 5)
            count = int(pipe.execute()[0])
        except redis.RedisError:
            with self._lock:
                self._local = {k: v for k, v in self._local.items() if k[0] == slot}
                count = self._local[(slot, who)] = self._local.get((slot, who), 0) + 1
        return count <= self.limit
