"""Where the per-event CPU goes in decoding (worker) and in log_many (producer): the fast
path (msgspec, auditq/events.py) against the model it stands in for, in one run.

    python bench/decode_compare.py [--events 20000] [--repeat 7]

Worker side, per stream entry: ``decode_entries`` as the worker calls it, against the model
alone (``model_decode``: how every entry was decoded before the fast path, the id and time
a producer left out derived from the entry id), for entries as the Python
client writes them (with an id and a time) and as producers in other languages may (without).
Producer side, per event of a 1,000-event ``log_many()``: validation (``build_event``),
encoding (``encode``, orjson, against the model's JSON), the whole call, and pipelined XADD
of the same payloads, its baseline. Each figure is the median of interleaved rounds of the
thread's CPU time (the machine is shared: CPU time moves less than wall time).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import redis
from common import save, table
from drain import events

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.devtools.embedded import RedisServer
from auditq.events import build_event, decode_entries, encode, model_decode

MAX_BYTES = 65_536


def stream_entries(n: int, complete: bool) -> list[tuple[str, dict[bytes, bytes]]]:
    """What the worker reads: producer JSON, with or without an id and a time."""
    entries = []
    for i, event in enumerate(events(n)):
        if complete:
            event |= {"id": str(uuid.uuid4()), "occurred_at": "2026-11-29T14:00:00.123456+00:00"}
        entries.append((f"{1764424800000 + i}-0", {b"event": orjson.dumps(event)}))
    return entries


def cpu_us(cases: dict[str, Callable[[], object]], items: int, repeat: int) -> dict[str, float]:
    """Each case's median CPU microseconds per item, rounds interleaved."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            started = time.thread_time()
            fn()
            runs[name].append((time.thread_time() - started) / items * 1e6)
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n, repeat = args.events, args.repeat

    worker_rows = []
    for complete, label in ((True, "with an id and a time"), (False, "without")):
        entries = stream_entries(n, complete)
        pairs = [(entry_id, fields[b"event"]) for entry_id, fields in entries]
        fast, model = cpu_us(
            {
                "fast": lambda e=entries: decode_entries(e, MAX_BYTES),
                "model": lambda p=pairs: [model_decode(raw, i) for i, raw in p],
            },
            n,
            repeat,
        ).values()
        worker_rows.append([label, fast, model, model / fast])

    dicts = events(1000)
    built = [build_event(d) for d in dicts]
    payloads = [encode(e, MAX_BYTES) for e in built]
    with (
        tempfile.TemporaryDirectory(prefix="auditq-bench-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        client = redis.Redis.from_url(server.url)
        producer = AuditClient(load_settings(redis_url=server.url, max_queue=10_000_000))

        def xadd() -> None:
            pipe = client.pipeline(transaction=False)
            for payload in payloads:
                pipe.xadd("bench:xadd", {"event": payload})
            pipe.execute()

        def log_many() -> None:
            producer.log_many(dicts)

        steps = cpu_us(
            {
                "validate: `build_event` (the model)": lambda: [build_event(d) for d in dicts],
                "encode: `encode` (orjson)": lambda: [encode(e, MAX_BYTES) for e in built],
                "encode: the model's JSON": lambda: [e.to_json() for e in built],
                "`log_many()`, the whole call": log_many,
                "baseline: pipelined XADD": xadd,
            },
            1000,
            repeat,
        )
        # Wall time too for the two calls the target compares: the server's work counts there.
        wall = {}
        for name, fn in (("log_many", log_many), ("xadd", xadd)):
            rounds = []
            for _ in range(repeat):
                started = time.perf_counter()
                fn()
                rounds.append(time.perf_counter() - started)
            wall[name] = statistics.median(rounds)
        client.delete("audit:events", "bench:xadd")
        client.close()
        producer.close()

    body = "Worker: decode and validate one stream entry (CPU)\n\n" + table(
        ["entries", "`decode_entries` us/entry", "the model alone us/entry", "speed-up"],
        worker_rows,
    )
    xadd_us = steps["baseline: pipelined XADD"]
    body += "\n\nProducer: one `log_many()` of 1,000 events, per event (CPU)\n\n" + table(
        ["step", "us/event (median)", "x pipelined XADD"],
        [[name, us, us / xadd_us] for name, us in steps.items()],
    )
    body += (
        f"\n\nWall time, 1,000 events per call: `log_many()` {wall['log_many'] * 1e3:.1f} ms, "
        f"pipelined XADD {wall['xadd'] * 1e3:.1f} ms: `log_many()` at "
        f"**{wall['xadd'] / wall['log_many']:.2f}x** the rate of pipelined XADD (target 0.6x)."
    )
    save("Decode and producer costs", f"python bench/decode_compare.py --events {n}", body)


if __name__ == "__main__":
    main()
