"""Worker heartbeats: what each worker publishes, and the reader the dashboard and alerts use.

Contract (read by the dashboard and the alert engine):
- ``<prefix>:worker:<id>``: a hash with ``id``, ``host``, ``pid``, ``started_at`` and
  ``last_beat`` (unix seconds), ``state`` (idle | draining | backoff | stopping),
  ``batch_size``, ``last_latency_ms``, and the process totals ``inserted``,
  ``failed_batches``, ``dead_lettered``, ``retried``. It expires ``heartbeat_ttl`` after
  the last beat, so a worker killed without warning disappears by itself.
- ``<prefix>:workers``: a sorted set, worker id -> last beat. A clean exit removes both;
  a killed worker's member stays (its score ages, shown as stale) until the next beat of
  any worker after ``AUDITQ_WORKER_FORGET_AFTER`` prunes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from auditq.keys import Keys

State = Literal["idle", "draining", "backoff", "stopping"]

# Members of workers killed without a clean exit are dropped after a while (the setting
# AUDITQ_WORKER_FORGET_AFTER), so the set stays small however often workers crash, and a
# crash shows on the workers page and in heartbeat_age_seconds for that long, not forever.
DEFAULT_FORGET_AFTER = 3600.0
DEFAULT_TTL = 30.0
DEFAULT_LIMIT = 100

log = logging.getLogger(__name__)


@dataclass
class WorkerStatus:
    """What this process reports; updated by the batch thread, read by the heartbeat thread."""

    stopping: threading.Event
    batch_size: int
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    busy: Literal["idle", "draining", "backoff"] = "idle"
    last_latency_ms: float = 0.0
    inserted: int = 0
    failed_batches: int = 0
    dead_lettered: int = 0
    retried: int = 0

    @property
    def id(self) -> str:
        """Also the consumer name in the group: unique per process, readable by operators."""
        return f"{self.host}:{self.pid}"

    @property
    def state(self) -> State:
        return "stopping" if self.stopping.is_set() else self.busy

    def fields(self, now: float) -> dict[str, str | int | float]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "last_beat": now,
            "state": self.state,
            "batch_size": self.batch_size,
            "last_latency_ms": round(self.last_latency_ms, 1),
            "inserted": self.inserted,
            "failed_batches": self.failed_batches,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
        }


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        status: WorkerStatus,
        ttl: float,
        forget_after: float = DEFAULT_FORGET_AFTER,
    ):
        self.redis = client
        self.keys = keys
        self.status = status
        self.ttl = ttl
        self.forget_after = forget_after

    def beat(self) -> None:
        """Publish the status (the scheduler's heartbeat job); a Redis error is only logged."""
        now = time.time()
        key = self.keys.worker(self.status.id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=self.status.fields(now))
        pipe.pexpire(key, int(self.ttl * 1000))
        pipe.zadd(self.keys.workers, {self.status.id: now})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now - self.forget_after)
        try:
            pipe.execute()
        except redis.RedisError as error:
            log.warning("heartbeat failed worker=%s error=%s", self.status.id, type(error).__name__)

    def remove(self) -> None:
        """On a clean exit: readers should see the worker gone, not stale."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.worker(self.status.id))
        pipe.zrem(self.keys.workers, self.status.id)
        try:
            pipe.execute()
        except redis.RedisError as error:
            log.warning(
                "heartbeat removal failed worker=%s error=%s", self.status.id, type(error).__name__
            )


_INTS = ("pid", "batch_size", "inserted", "failed_batches", "dead_lettered", "retried")
_FLOATS = ("started_at", "last_beat", "last_latency_ms")
_TEXTS = ("id", "host", "state")


def list_workers(
    client: redis.Redis,
    keys: Keys,
    now: float | None = None,
    ttl: float = DEFAULT_TTL,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Workers by most recent beat (at most ``limit``: two round trips, bounded).

    Each dict has the contract's fields plus ``age`` (seconds since the last beat) and
    ``status``: ``alive`` when its hash exists and it beat less than ``ttl`` ago, else
    ``stale`` (killed, hung, or cut off from Redis). A stale worker whose hash expired has
    only ``id``, ``last_beat``, ``age`` and ``status``; its other fields are None.
    Pass the workers' ``heartbeat_ttl`` as ``ttl``.
    """
    now = time.time() if now is None else now
    members = client.zrevrange(keys.workers, 0, limit - 1, withscores=True)
    pipe = client.pipeline(transaction=False)
    for member, _score in members:
        pipe.hgetall(keys.worker(_text(member)))
    workers = []
    for (member, score), raw in zip(members, pipe.execute(), strict=True):
        details = {_text(k): _text(v) for k, v in raw.items()}
        worker: dict[str, Any] = {}
        for names, kind in ((_TEXTS, str), (_INTS, _int), (_FLOATS, float)):
            for name in names:
                worker[name] = kind(details[name]) if name in details else None
        worker["id"] = _text(member)
        worker["last_beat"] = max(float(score), worker["last_beat"] or 0.0)
        worker["age"] = max(0.0, now - worker["last_beat"])
        worker["status"] = "alive" if details and worker["age"] < ttl else "stale"
        workers.append(worker)
    return workers


def _int(raw: str) -> int:
    return int(float(raw))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
