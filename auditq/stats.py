"""Counters in Redis: running totals plus one hash per minute, kept for a little over 24 h.

Producers, the enqueue script and workers all count here; the dashboard, /metrics and the
alert engine read it. Every read is bounded: totals are one HGETALL, a series is one
pipelined HGETALL per minute asked for (at most 1,440).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import redis

from auditq.keys import Keys, shard_keys

MINUTE_TTL = 25 * 3600
MAX_MINUTES = 24 * 60

# Why an event was dropped: each reason is a counter ``dropped_<reason>``.
DROP_REASONS = ("queue_full", "redis_unavailable", "direct_failed")


def epoch_minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


def dropped(counters: Mapping[str, float]) -> float:
    """Events dropped for any reason, in a counters hash (totals or one minute)."""
    return sum(counters.get(f"dropped_{reason}", 0) for reason in DROP_REASONS)


def window_weights(now: float) -> tuple[int, float]:
    """The last 60 s up to ``now`` from minute buckets: (current epoch minute, weight of the
    previous minute's bucket).

    "Per minute" everywhere (the overview's rates, the alert metrics) is the whole current
    bucket (``floor(now / 60)``, which holds only the seconds already elapsed in it) plus the
    previous bucket weighted by the share of it still inside the window,
    ``(60 - seconds elapsed in the current minute) / 60``: a sliding-window estimate that
    assumes the previous minute's events were spread evenly. An event is counted for 60 s
    to 120 s, never for less.
    """
    minute = epoch_minute(now)
    elapsed = now - minute * 60
    return minute, max(0.0, min(1.0, (60 - elapsed) / 60))


def last_minute(
    current: Mapping[str, float], previous: Mapping[str, float], weight: float
) -> dict[str, float]:
    """Counters over the last 60 s: ``current`` plus ``previous`` times ``weight`` (see
    ``window_weights``)."""
    window = dict(current)
    for field, value in previous.items():
        window[field] = window.get(field, 0) + value * weight
    return window


class Stats:
    """Counts go to ``keys`` (a shard's own counters, or shard 0's for a producer's own
    counts); reads add up ``shards`` shards (``auditq.shards.shard_count``) of its prefix."""

    def __init__(self, client: redis.Redis, keys: Keys, shards: int = 1):
        self.redis = client
        self.keys = keys
        self.read_keys = shard_keys(keys.prefix, shards)

    def incr(self, counts: Mapping[str, int | float], pipe: redis.client.Pipeline | None = None):
        """Add to the totals and to this minute. Pass ``pipe`` to ride on another round trip."""
        target = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        minute = self.keys.minute(epoch_minute())
        for field, amount in counts.items():
            if not amount:
                continue
            if isinstance(amount, float):
                target.hincrbyfloat(self.keys.counters, field, amount)
                target.hincrbyfloat(minute, field, amount)
            else:
                target.hincrby(self.keys.counters, field, amount)
                target.hincrby(minute, field, amount)
        target.expire(minute, MINUTE_TTL)
        if pipe is None:
            target.execute()

    def totals(self) -> dict[str, float]:
        return add_counters(self.per_shard())

    def per_shard(self) -> list[dict[str, float]]:
        """The totals of each shard, shard 0 first (the dashboard's breakdown)."""
        pipe = self.redis.pipeline(transaction=False)
        for keys in self.read_keys:
            pipe.hgetall(keys.counters)
        return [parse_counters(raw) for raw in pipe.execute()]

    def series(self, minutes: int, now: float | None = None) -> list[tuple[int, dict[str, float]]]:
        """The last ``minutes`` whole minutes, oldest first, as (epoch_minute, counters)."""
        minutes = max(1, min(minutes, MAX_MINUTES))
        last = epoch_minute(now)
        span: Iterable[int] = range(last - minutes + 1, last + 1)
        pipe = self.redis.pipeline(transaction=False)
        for minute in span:
            for keys in self.read_keys:
                pipe.hgetall(keys.minute(minute))
        replies = iter(pipe.execute())
        shards = len(self.read_keys)
        return [
            (m, add_counters(parse_counters(next(replies)) for _ in range(shards))) for m in span
        ]


def add_counters(hashes: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Counters of several shards (or minutes) added field by field."""
    out: dict[str, float] = {}
    for counters in hashes:
        for field, value in counters.items():
            out[field] = out.get(field, 0) + value
    return out


def parse_counters(raw: Mapping[bytes, bytes]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in raw.items():
        number = float(value)
        out[key.decode() if isinstance(key, bytes) else key] = (
            int(number) if number.is_integer() else number
        )
    return out


# Batch latency is counted in a fixed histogram (one field per bucket, per minute), so a
# p95 over any window is a sum of a few hash fields, not a scan of samples.
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


def latency_field(ms: float) -> str:
    """The histogram field a batch latency falls in: ``lat_le_<bound>`` or ``lat_le_inf``."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return f"lat_le_{bound}"
    return "lat_le_inf"


def latency_percentile(counters: Mapping[str, float], q: float = 0.95) -> float | None:
    """Upper bound (ms) of the bucket holding the q-th latency, None without samples."""
    bounds = [*LATENCY_BUCKETS_MS, float("inf")]
    counts = [counters.get(latency_field(b if b != float("inf") else 1e12), 0) for b in bounds]
    total = sum(counts)
    if not total:
        return None
    seen = 0.0
    for bound, count in zip(bounds, counts, strict=True):
        seen += count
        if seen >= q * total:
            return bound
    return bounds[-1]
