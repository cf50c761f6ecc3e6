"""Login attempts: fixed-window counters in Redis (INCR + EXPIRE), shared by every gunicorn
worker and dyno.

No library: one counter on one route is two Redis commands, and Flask-Limiter would bring
its own storage layer and configuration for that. While Redis is unreachable the count falls
back to this process's memory, so the dashboard can still be logged into (it is needed most
when things are broken) without giving up the limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis

from auditq.keys import Keys

LOGIN_WINDOW = 300  # seconds
# Attempts per client address in a window.
LOGIN_LIMIT = 10
# Failed attempts per login (admin, viewer) in a window, from all addresses together: a
# botnet with fresh addresses gets this many guesses, while one person's typos never
# reach it. Past it the login is locked until the window ends.
LOGIN_FAILURES_PER_ROLE = 30


class FixedWindow:
    def __init__(self, client: redis.Redis, keys: Keys, limit: int, window: int):
        self.redis = client
        self.keys = keys
        self.limit = limit
        self.window = window
        self._local: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def hit(self, who: str, now: float | None = None) -> bool:
        """Count one attempt; False when ``who`` is over the limit in this window."""
        slot = self._slot(now)
        key = self.keys.login_attempts(slot, who)
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

    def exhausted(self, who: str, now: float | None = None) -> bool:
        """True when ``who`` has used up the limit in this window (nothing is counted)."""
        slot = self._slot(now)
        try:
            count = int(self.redis.get(self.keys.login_attempts(slot, who)) or 0)
        except redis.RedisError:
            with self._lock:
                count = self._local.get((slot, who), 0)
        return count >= self.limit

    def _slot(self, now: float | None) -> int:
        return int((time.time() if now is None else now) // self.window)


@dataclass(frozen=True)
class LoginLimits:
    """Both limits on the login form: attempts per client address, failures per login."""

    per_ip: FixedWindow
    per_login: FixedWindow

    @classmethod
    def on(cls, client: redis.Redis, keys: Keys) -> LoginLimits:
        return cls(
            FixedWindow(client, keys, LOGIN_LIMIT, LOGIN_WINDOW),
            FixedWindow(client, keys, LOGIN_FAILURES_PER_ROLE, LOGIN_WINDOW),
        )
