"""Producer cost: AuditClient.log() against a plain XADD, an RQ enqueue and a direct insert.

    python bench/producer.py [--calls 20000]

One thread, loopback Redis. Latency percentiles per call, and log_many throughput against
pipelined XADD. Ratios are auditq / baseline (lower is better for latency).
"""

from __future__ import annotations

import argparse
import json
import time

import redis
from common import save, services, summary, table
from rq import Queue as RQQueue
from supabase import ClientOptions, create_client

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.events import build_event
from bench.jobs import insert_event


def timed(calls: int, fn) -> list[float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def event(i: int) -> dict:
    return {
        "action": "user.login",
        "actor_id": f"u_{i}",
        "target_type": "session",
        "ip": "203.0.113.9",
        "metadata": {"mfa": True, "attempt": i},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--direct-calls", type=int, default=1_000)
    args = parser.parse_args()

    with services() as svc:
        raw = redis.Redis.from_url(svc.redis.url)
        settings = load_settings(redis_url=svc.redis.url, max_queue=10_000_000)
        client = AuditClient(settings)
        payload = build_event(event(0)).to_json()
        rq_queue = RQQueue("bench", connection=raw)
        supabase = create_client(
            svc.supabase.url,
            svc.supabase.service_key,
            ClientOptions(httpx_client=__import__("httpx").Client()),
        )

        warm = 500
        timed(warm, lambda i: client.log(**event(i)))
        results = {
            "AuditClient.log()": timed(args.calls, lambda i: client.log(**event(i))),
            "baseline: redis-py XADD": timed(
                args.calls, lambda i: raw.xadd("bench:xadd", {"event": payload})
            ),
            "baseline: RQ enqueue (1 job/event)": timed(
                args.calls, lambda i: rq_queue.enqueue(insert_event, {"i": i})
            ),
            "baseline: supabase-py insert (1 row/call)": timed(
                args.direct_calls,
                lambda i: (
                    supabase.table("audit_logs")
                    .insert(build_event(event(i)).model_dump(mode="json"), returning="minimal")
                    .execute()
                ),
            ),
        }
        base_p99 = summary(results["baseline: redis-py XADD"])["p99"]
        rows = []
        for name, samples in results.items():
            s = summary(samples)
            rows.append([name, len(samples), s["p50"], s["p99"], s["p99.9"], s["p99"] / base_p99])

        raw.delete("audit:events", "bench:xadd")
        batch = [event(i) for i in range(1000)]
        rounds = max(1, args.calls // 1000)
        started = time.perf_counter()
        for _ in range(rounds):
            client.log_many(batch)
        many_rate = rounds * 1000 / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(rounds):
            pipe = raw.pipeline(transaction=False)
            for _ in range(1000):
                pipe.xadd("bench:xadd", {"event": payload})
            pipe.execute()
        xadd_rate = rounds * 1000 / (time.perf_counter() - started)

    body = table(["producer call", "calls", "p50 ms", "p99 ms", "p99.9 ms", "p99 / XADD p99"], rows)
    body += "\n\n" + table(
        ["bulk enqueue (1,000 per call)", "events/s", "ratio to pipelined XADD"],
        [
            ["AuditClient.log_many()", f"{many_rate:,.0f}", many_rate / xadd_rate],
            ["baseline: pipelined XADD", f"{xadd_rate:,.0f}", 1.0],
        ],
    )
    target = summary(results["AuditClient.log()"])["p99"]
    body += (
        f"\n\nTarget `log()` p99 <= 1 ms on loopback: **{target:.3f} ms**, "
        f"{'met' if target <= 1 else 'missed'}."
    )
    save("Producer latency", "python bench/producer.py --calls " + str(args.calls), body)
    print(json.dumps({"log_p99_ms": target}))


if __name__ == "__main__":
    main()
