"""The overview numbers, read from Redis with bounded commands only.

One snapshot costs, per shard (AUDITQ_SHARDS; one GET finds how many): XLEN twice,
XRANGE COUNT 1 (lag), HGETALL of the totals, one pipelined HGETALL per minute of the chart
window (60 or 1,440); then INFO memory, and the heartbeat read (a ZRANGE plus one HGETALL
per worker). Nothing scans a stream. The overview page, its
htmx fragment and /api/v1/stats start here (/metrics and the alert metrics read Redis
themselves, with the same core helpers).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import redis

from auditq.stats import (
    DROP_REASONS,
    dropped,
    epoch_minute,
    last_minute,
    latency_percentile,
    window_weights,
)
from dashboard.resources import Resources

RANGES = {"1h": 60, "24h": 24 * 60}
# What went wrong besides drops, each counted in its own unit; the cards and the charts
# use these names.
FAILURES = {
    "failed_batches": ("failed batches", "batches"),
    "retried": ("retries", "batches"),
    "direct_failed": ("direct writes failed", "events"),
    "dead_lettered": ("dead-lettered", "events"),
}


def last_60s(series: list[tuple[int, dict[str, float]]], now: float) -> dict[str, float]:
    """The counters over the last 60 s (``auditq.stats.window_weights``); ``series`` ends
    with the current minute."""
    _, weight = window_weights(now)
    current = series[-1][1] if series else {}
    previous = series[-2][1] if len(series) > 1 else {}
    return last_minute(current, previous, weight)


def snapshot(res: Resources, range_name: str = "1h", now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    minutes = RANGES.get(range_name, 60)
    out: dict[str, Any] = {
        "generated_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "range": range_name if range_name in RANGES else "1h",
        "redis": {"ok": True, "error": None},
    }
    try:
        shards = res.shards()
        depth = res.depth(shards, now)
        stats = res.stats(shards)
        totals = stats.totals()
        series = stats.series(minutes, now=now)
        per_shard = stats.per_shard() if shards > 1 else [totals]
        memory = res.redis.info("memory")
        workers = res.workers(now)
    except redis.RedisError as error:
        out["redis"] = {"ok": False, "error": f"Redis unreachable ({type(error).__name__})"}
        return out

    window: dict[str, float] = {}
    for _, counters in series:
        for name, value in counters.items():
            window[name] = window.get(name, 0) + value

    out["redis"].update(
        used_memory=memory.get("used_memory"),
        used_memory_human=memory.get("used_memory_human"),
        maxmemory=memory.get("maxmemory") or None,
    )
    out["queue"] = {
        "length": depth.length,
        "max": res.settings.max_queue,
        "fill": round(depth.length / res.settings.max_queue, 4),
        "lag_seconds": round(depth.lag, 3),
        "dead_letters": depth.dead,
    }
    # Whole numbers: the window is an estimate, and "10,038.5 per minute" claimed a
    # precision it does not have.
    recent = last_60s(series, now)
    out["rates"] = {
        "enqueued_per_minute": round(recent.get("enqueued", 0)),
        "inserted_per_minute": round(recent.get("inserted", 0)),
        "dropped_per_minute": round(dropped(recent)),
    }
    out["drops"] = {
        reason: {
            "total": totals.get(f"dropped_{reason}", 0),
            "window": window.get(f"dropped_{reason}", 0),
        }
        for reason in DROP_REASONS
    }
    out["failures"] = {
        name: {
            "label": label,
            "unit": unit,
            "total": totals.get(name, 0),
            "window": window.get(name, 0),
        }
        for name, (label, unit) in FAILURES.items()
    }
    out["totals"] = totals
    # AUDITQ_SHARDS: each shard's own running totals, so a hot or stuck shard shows.
    out["shards"] = [
        {
            "shard": i,
            "length": length,
            "dead_letters": dead,
            "enqueued": c.get("enqueued", 0),
            "inserted": c.get("inserted", 0),
        }
        for i, (c, length, dead) in enumerate(
            zip(per_shard, depth.lengths, depth.deads, strict=True)
        )
    ]
    out["window"] = {"minutes": minutes, "counters": window}
    batches = window.get("batches", 0)
    out["latency"] = {
        "p95_ms": latency_percentile(window, 0.95),
        "avg_ms": round(window.get("batch_latency_ms_sum", 0) / batches, 1) if batches else None,
    }
    alive = sum(1 for w in workers if w.get("status") == "alive")
    out["workers"] = {"alive": alive, "stale": len(workers) - alive, "total": len(workers)}
    out["series"] = [
        {
            "minute": minute,
            "enqueued": counters.get("enqueued", 0),
            "inserted": counters.get("inserted", 0),
            "dropped": dropped(counters),
            **{name: counters.get(name, 0) for name in FAILURES},
            "counters": counters,
        }
        for minute, counters in series
    ]
    out["current_minute"] = epoch_minute(now)
    return out


def public_view(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as /api/v1/stats serves it (the series without raw counter hashes)."""
    out = {k: v for k, v in snap.items() if k != "series"}
    if "series" in snap:
        out["series"] = [{k: v for k, v in p.items() if k != "counters"} for p in snap["series"]]
    return out
