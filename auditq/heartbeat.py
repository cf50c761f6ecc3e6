"""The heartbeat contract: how a worker says it is alive, and how everyone else reads that.

Workers write it (``worker/heartbeat.py`` calls ``record`` and ``remove``); the dashboard's
overview, workers page and /metrics read it with ``list_workers``; the alert metrics count
live workers with ``count_alive``. One module, so nobody disagrees about "alive".

Keys (``auditq.keys``):
- ``<prefix>:worker:<id>``: a hash with ``id``, ``host``, ``pid``, ``started_at`` and
  ``last_beat`` (unix seconds), ``state`` (idle | draining | backoff | stopping),
  ``batch_size``, ``last_latency_ms``, and the process totals ``inserted``,
  ``failed_batches``, ``dead_lettered``, ``retried``. It expires ``ttl`` after the last
  beat, so a worker killed without warning loses its details by itself.
- ``<prefix>:workers``: a sorted set, worker id -> last beat.

Rules:
- alive: the last beat is younger than AUDITQ_HEARTBEAT_TTL (and its hash still exists);
- stale: registered but not alive (killed, hung, or cut off from Redis);
- forgotten: a member whose last beat is older than AUDITQ_WORKER_FORGET_AFTER is pruned
  at the next beat of any worker; a clean exit removes the hash and the member at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import redis

from auditq.config import Settings
from auditq.keys import Keys

# The defaults of the settings that govern the rules, for callers without a Settings.
DEFAULT_TTL: float = Settings.model_fields["heartbeat_ttl"].default
DEFAULT_FORGET_AFTER: float = Settings.model_fields["worker_forget_after"].default
DEFAULT_LIMIT = 100  # workers listed at most: one HGETALL each, so the read stays bounded

_INTS = ("pid", "batch_size", "inserted", "failed_batches", "dead_lettered", "retried")
_FLOATS = ("started_at", "last_beat", "last_latency_ms")
_TEXTS = ("id", "host", "state")


def alive_since(now: float, ttl: float) -> float:
    """The oldest last beat that still counts as alive at ``now``."""
    return now - ttl


def record(
    client: redis.Redis,
    keys: Keys,
    worker_id: str,
    fields: Mapping[str, str | int | float],
    *,
    ttl: float,
    forget_after: float,
    now: float,
) -> None:
    """Publish one beat (one transaction) and forget workers silent past ``forget_after``."""
    key = keys.worker(worker_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={**fields, "last_beat": now})
    pipe.pexpire(key, int(ttl * 1000))
    pipe.zadd(keys.workers, {worker_id: now})
    pipe.zremrangebyscore(keys.workers, "-inf", now - forget_after)
    pipe.execute()


def remove(client: redis.Redis, keys: Keys, worker_id: str) -> None:
    """A clean exit: readers see the worker gone, not stale."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.worker(worker_id))
    pipe.zrem(keys.workers, worker_id)
    pipe.execute()


def count_alive(client: redis.Redis, keys: Keys, ttl: float, now: float | None = None) -> Any:
    """How many workers are alive at ``now``: one ZCOUNT.

    On a client it returns the count; on a pipeline it queues the command and the count is
    that command's result from ``execute()`` (so the alert metrics keep one round trip).
    """
    now = time.time() if now is None else now
    # "(" makes the bound exclusive, as in list_workers: a beat exactly ttl old is stale.
    return client.zcount(keys.workers, f"({alive_since(now, ttl)!r}", "+inf")


def list_workers(
    client: redis.Redis,
    keys: Keys,
    now: float | None = None,
    ttl: float = DEFAULT_TTL,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Workers by most recent beat (at most ``limit``: two round trips, bounded).

    Each dict has the contract's fields plus ``age`` (seconds since the last beat) and
    ``status``: ``alive`` or ``stale`` (see the rules above). A stale worker whose hash
    expired has only ``id``, ``last_beat``, ``age`` and ``status``; its other fields are
    None. Pass the workers' ``heartbeat_ttl`` as ``ttl``.
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
        alive = details and worker["last_beat"] > alive_since(now, ttl)
        worker["status"] = "alive" if alive else "stale"
        workers.append(worker)
    return workers


def _int(raw: str) -> int:
    return int(float(raw))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
