"""A Redis lease: one holder at a time, renewed by a script that checks the holder's token.

Shared by every job that must run in one process at a time (the alert evaluator, the
sealer); a holder that dies lets go when ``ttl`` runs out.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis

_TAKE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def holder_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisLease:
    """One holder at a time, which must renew it before ``ttl`` runs out."""

    def __init__(self, client: redis.Redis, key: str, ttl: float, token: str):
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = token
        self._take = client.register_script(_TAKE_OR_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease, or renew it if this holder has it. False if another holds it."""
        return bool(self._take(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])
