"""Producer cost under asyncio: AsyncAuditClient.log() against the sync client and plain
redis.asyncio XADD, and the longest event-loop stall while the events are logged.

    python bench/async_producer.py [--events 10000] [--concurrency 1,100]

Each run logs ``--events`` events from N tasks on one event loop (loopback Redis), for each
N of ``--concurrency``; every row is warmed up with 1,000 calls first. Latency is per call
as the task sees it (queueing in the loop included, the same for every row). A stall is the
lateness of a 1 ms ``asyncio.sleep`` ticker that runs beside the producers: how long the
loop could not serve anything else.
Rows:
- AsyncAuditClient.log(): the new client (concurrent calls share script calls);
- AuditClient.log() in the loop: what an async app does today (blocks the loop per call);
- AuditClient.log() via asyncio.to_thread: the sync client kept off the loop;
- baseline redis.asyncio XADD: one XADD per call, concurrent tasks (a connection each);
- baseline redis.asyncio pipelined XADD: 1,000 per pipeline, throughput only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio
from common import save, summary, table
from producer import event  # the same event as the sync producer benchmark

from auditq.async_client import AsyncAuditClient
from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.devtools.embedded import RedisServer
from auditq.events import build_event


async def ticker(stop: asyncio.Event, stalls: list[float]) -> None:
    """Sleeps 1 ms at a time and records how late each wake-up was (ms)."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        stalls.append((time.perf_counter() - started) * 1000 - 1)


async def run(
    call: Callable[[int], Awaitable[object]], events: int, concurrency: int
) -> tuple[list[float], float, float]:
    """Latencies (ms), throughput (events/s) and the ticker's lateness samples (ms)."""
    samples: list[float] = []
    stalls: list[float] = []
    stop = asyncio.Event()

    async def producer(first: int) -> None:
        for i in range(first, events, concurrency):
            started = time.perf_counter()
            await call(i)
            samples.append((time.perf_counter() - started) * 1000)

    watch = asyncio.create_task(ticker(stop, stalls))
    await asyncio.sleep(0.01)  # the ticker is running before the first event
    started = time.perf_counter()
    await asyncio.gather(*(producer(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    stop.set()
    await watch
    return samples, events / elapsed, stalls


async def pipelined(client: redis.asyncio.Redis, payload: str, events: int) -> float:
    started = time.perf_counter()
    for first in range(0, events, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(first, min(events, first + 1000)):
            pipe.xadd("bench:xadd", {"event": payload})
        await pipe.execute()
    return events / (time.perf_counter() - started)


async def measure(url: str, events: int, concurrency: int) -> tuple[list[list[object]], dict]:
    # A 1 s Redis timeout: under 100 concurrent tasks the loop itself can delay reading a
    # reply past the default 100 ms, which would count as drops rather than latency.
    settings = load_settings(redis_url=url, max_queue=10_000_000, redis_timeout=1.0)
    raw = redis.asyncio.Redis.from_url(url)
    payload = build_event(event(0)).to_json()
    sync_client = AuditClient(settings)
    outcomes: dict[str, dict[str, int]] = {}

    async def counted(name: str, result) -> None:
        outcomes.setdefault(name, {}).setdefault(result.outcome, 0)
        outcomes[name][result.outcome] += 1

    async with AsyncAuditClient(settings) as client:
        rows_in = {
            "AsyncAuditClient.log()": lambda i: client.log(**event(i)),
            "AuditClient.log() in the loop": lambda i: _now(sync_client.log(**event(i))),
            "AuditClient.log() via asyncio.to_thread": lambda i: asyncio.to_thread(
                sync_client.log, **event(i)
            ),
        }
        results = {}
        for name, call in rows_in.items():

            async def logged(i: int, call=call, name=name) -> None:
                await counted(name, await call(i))

            await run(call, 1000, concurrency)  # warm-up, not counted
            results[name] = await run(logged, events, concurrency)
        xadd = lambda i: raw.xadd("bench:xadd", {"event": payload})  # noqa: E731
        await run(xadd, 1000, concurrency)
        results["baseline: redis.asyncio XADD"] = await run(xadd, events, concurrency)
        xadd_pipelined = await pipelined(raw, payload, events)
    sync_client.close()
    await raw.aclose()

    base = summary(results["baseline: redis.asyncio XADD"][0])["p99"]
    rows: list[list[object]] = []
    for name, (samples, rate, stalls) in results.items():
        s = summary(samples)
        stall = [summary(stalls)["p99"], max(stalls)]
        rows.append([name, f"{rate:,.0f}", s["p50"], s["p99"], s["p99"] / base, *stall])
    rows.append(["baseline: redis.asyncio pipelined XADD", f"{xadd_pipelined:,.0f}"] + ["-"] * 5)
    return rows, outcomes


async def _now(value):
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", default="1,100", help="task counts, comma-separated")
    args = parser.parse_args()

    parts = []
    with (
        tempfile.TemporaryDirectory(prefix="auditq-bench-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        for concurrency in (int(n) for n in args.concurrency.split(",")):
            rows, outcomes = asyncio.run(measure(server.url, args.events, concurrency))
            redis.Redis.from_url(server.url).flushdb()
            headers = [f"{args.events:,} events, {concurrency} task(s)", "events/s", "p50 ms"]
            headers += ["p99 ms", "p99 / XADD p99", "loop stall p99 ms", "longest stall ms"]
            parts.append(table(headers, rows))
            parts.append("Outcomes: " + "; ".join(
                f"{name}: " + ", ".join(f"{n:,} {outcome}" for outcome, n in counts.items())
                for name, counts in outcomes.items()
            ))  # fmt: skip
            print(json.dumps({"concurrency": concurrency, "outcomes": outcomes}))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    parts.append(f"Load average (1, 5, 15 min) at the end: {load} on a shared machine.")
    command = f"python bench/async_producer.py --events {args.events}"
    save("Async producer", f"{command} --concurrency {args.concurrency}", "\n\n".join(parts))


if __name__ == "__main__":
    main()
