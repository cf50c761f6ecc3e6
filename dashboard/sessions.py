"""Revocable sessions. The session is a signed cookie, which the server cannot take back, so
each login gets a random id and logout lists that id as revoked (in Redis, for every
process, until the cookie would expire anyway). A cookie copied before logout is then
refused. A password change ends sessions differently: each session carries a fingerprint
of the password it was made with (``dashboard.access``).

While Redis is unreachable, logout still revokes the session in this process's memory; a
check that cannot reach Redis relies on that memory alone, so the dashboard stays usable
when it is needed most.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import timedelta

import redis

from auditq.keys import Keys

log = logging.getLogger(__name__)

SESSION_LIFETIME = timedelta(hours=12)


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


class Revocations:
    def __init__(self, client: redis.Redis, keys: Keys, lifetime: timedelta = SESSION_LIFETIME):
        self.redis = client
        self.keys = keys
        self.ttl = int(lifetime.total_seconds())
        self._local: dict[str, float] = {}  # session id -> when its cookie expires anyway
        self._lock = threading.Lock()

    def revoke(self, session_id: str) -> None:
        now = time.time()
        with self._lock:
            self._local = {sid: until for sid, until in self._local.items() if until > now}
            self._local[session_id] = now + self.ttl
        try:
            self.redis.set(self.keys.revoked_session(session_id), 1, ex=self.ttl)
        except redis.RedisError as error:
            log.warning(
                "session revocation kept in this process only error=%s", type(error).__name__
            )

    def is_revoked(self, session_id: str) -> bool:
        with self._lock:
            if self._local.get(session_id, 0) > time.time():
                return True
        try:
            return bool(self.redis.exists(self.keys.revoked_session(session_id)))
        except redis.RedisError:
            return False
