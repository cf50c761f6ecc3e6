"""Every event accounted for: the queue's counters against what is still in the stream.

Each stream entry is counted once when it goes in (``enqueued``, by the enqueue script, in
the same atomic call as its XADD) and once when it goes out (``inserted``, ``duplicates``
or ``dead_lettered``, in the same MULTI as the ack that removes it). Entries still in the stream
(unread or pending in a worker) are XLEN. So at any instant, read atomically:

    enqueued = inserted + duplicates + dead_lettered + XLEN

and any difference (``gap``) is an event that left the queue unaccounted: the stream was
trimmed or deleted by hand, or Redis lost data. Producers' drops (``dropped_*``) never
entered the stream; they are shown beside it so that what producers handed over is
accounted for too: received = enqueued + dropped.

Per hour (the minute counters live 25 h) the same sums are shown with the backlog at each
hour's end, walked back from the current XLEN: an hour that would have started with a
negative backlog lost that many. This assumes what an hour drained was enqueued within the
window, so a backlog older than 24 h can show as a gap in the oldest hours.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import redis

from auditq.keys import Keys
from auditq.stats import parse_counters

OUT = ("inserted", "duplicates", "dead_lettered")
DROPPED = ("dropped_queue_full", "dropped_redis_unavailable", "dropped_direct_failed")


@dataclass(frozen=True)
class Hour:
    start: int  # epoch seconds of the hour's start
    enqueued: int
    stored: int
    duplicates: int
    dead_lettered: int
    dropped: int
    queued_at_end: int  # still queued or pending when the hour ended (walked back from now)
    gap: int  # > 0: more left the queue in this hour than can be accounted for

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _sum(counters: dict[str, float], names) -> int:
    return int(sum(counters.get(name, 0) for name in names))


def gap(client: redis.Redis, keys: Keys) -> int:
    """enqueued - (inserted + duplicates + dead_lettered + XLEN), from one atomic read."""
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(keys.counters)
    pipe.xlen(keys.stream)
    raw, length = pipe.execute()
    totals = parse_counters(raw)
    return int(totals.get("enqueued", 0)) - _sum(totals, OUT) - int(length)


def hours(client: redis.Redis, keys: Keys, count: int = 24, now: float | None = None) -> list[Hour]:
    """The last ``count`` hours (the current one included), newest first."""
    now = time.time() if now is None else now
    this_hour = int(now // 3600)
    first_minute = (this_hour - count + 1) * 60
    last_minute = int(now // 60)
    pipe = client.pipeline(transaction=True)
    for minute in range(first_minute, last_minute + 1):
        pipe.hgetall(keys.minute(minute))
    pipe.xlen(keys.stream)
    *minutes, length = pipe.execute()
    per_hour: dict[int, dict[str, float]] = {}
    for minute, raw in zip(range(first_minute, last_minute + 1), minutes, strict=True):
        bucket = per_hour.setdefault(minute // 60, {})
        for name, value in parse_counters(raw).items():
            bucket[name] = bucket.get(name, 0) + value
    out: list[Hour] = []
    queued_end = int(length)  # the backlog at the end of the newest hour: now
    for hour in range(this_hour, this_hour - count, -1):
        c = per_hour.get(hour, {})
        enqueued = int(c.get("enqueued", 0))
        queued_start = queued_end - (enqueued - _sum(c, OUT))
        out.append(
            Hour(
                start=hour * 3600,
                enqueued=enqueued,
                stored=int(c.get("inserted", 0)),
                duplicates=int(c.get("duplicates", 0)),
                dead_lettered=int(c.get("dead_lettered", 0)),
                dropped=_sum(c, DROPPED),
                queued_at_end=queued_end,
                gap=max(0, -queued_start),
            )
        )
        queued_end = max(queued_start, 0)  # counted once, in the hour it happened
    return out
