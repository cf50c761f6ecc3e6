"""Where the time of one ``log_many()`` of 1,000 events goes, step by step, against its
baseline: a redis-py pipeline of 1,000 XADDs of the same payloads (hiredis packing).

    python bench/log_many.py [--rounds 15]

Per event, medians of interleaved rounds: each step's CPU time in this thread (the machine
is shared: CPU time moves less than wall time), the wall time of the whole call and of
the baseline, and Redis' own time in the enqueue script and in XADD (INFO commandstats).
The steps are what ``AuditClient.log_many`` runs, called one by one on the same events:
validation and encoding (``encode_batch``; the model's path, ``build_event`` then
``encode``, beside it), the enqueue script call (``ShardedQueue.enqueue``) and the results.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from common import save, table
from producer import event  # bench/producer.py's: what an app logs on a login

from auditq.bulk import encode_batch
from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.devtools.embedded import RedisServer
from auditq.events import build_event, encode
from auditq.producer import Batch
from auditq.redact import DEFAULT_KEY_SET

MAX_BYTES = 65_536
EVENTS = 1000


def measure(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float]]:
    """Each case's median (CPU, wall) microseconds per event, rounds interleaved."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            cpu, wall = time.thread_time(), time.perf_counter()
            fn()
            runs[name].append((time.thread_time() - cpu, time.perf_counter() - wall))
    return {
        name: (
            statistics.median(c for c, _ in samples) / EVENTS * 1e6,
            statistics.median(w for _, w in samples) / EVENTS * 1e6,
        )
        for name, samples in runs.items()
    }


def server_us(client: redis.Redis, command: str, fn: Callable[[], object], rounds: int) -> float:
    """Redis' own microseconds per event in ``command`` while ``fn`` runs."""
    client.config_resetstat()
    for _ in range(rounds):
        fn()
    stats = client.info("commandstats")[f"cmdstat_{command}"]
    return stats["usec"] / (rounds * EVENTS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    dicts = [event(i) for i in range(EVENTS)]

    with (
        tempfile.TemporaryDirectory(prefix="auditq-bench-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        raw = redis.Redis.from_url(server.url)
        client = AuditClient(load_settings(redis_url=server.url, max_queue=10_000_000))
        payloads = encode_batch(dicts, MAX_BYTES).payloads
        items = [("normal", p) for p in payloads]
        decided = Batch.of(dicts, MAX_BYTES, DEFAULT_KEY_SET)
        decided.decide(list(range(EVENTS)), [("queued", None)] * EVENTS)

        def xadd() -> None:
            pipe = raw.pipeline(transaction=False)
            for payload in payloads:
                pipe.xadd("bench:xadd", {"event": payload})
            pipe.execute()

        steps = measure(
            {
                "validate + encode: `encode_batch`": lambda: encode_batch(dicts, MAX_BYTES),
                "validate + encode, the model's way": lambda: [
                    encode(build_event(d), MAX_BYTES) for d in dicts
                ],
                "the enqueue script call": lambda: client.queue.enqueue(items, [None] * EVENTS),
                "the results": decided.results,
                "`log_many()`, the whole call": lambda: client.log_many(dicts),
                "baseline: pipelined XADD": xadd,
            },
            args.rounds,
        )
        script = server_us(raw, "evalsha", lambda: client.log_many(dicts), args.rounds)
        plain = server_us(raw, "xadd", xadd, args.rounds)
        raw.delete("audit:events", "bench:xadd")
        client.close()
        raw.close()

    base_cpu, base_wall = steps["baseline: pipelined XADD"]
    rows = [[name, cpu, wall, cpu / base_cpu] for name, (cpu, wall) in steps.items()]
    rows.insert(-1, ["(Redis, in the enqueue script)", script, "", script / base_cpu])
    rows.append(["(Redis, in XADD)", plain, "", plain / base_cpu])
    ratio = base_wall / steps["`log_many()`, the whole call"][1]
    body = table(["step, per event of 1,000", "CPU us", "wall us", "CPU x baseline"], rows)
    body += (
        f"\n\n`log_many()` at **{ratio:.2f}x** the rate of pipelined XADD of the same payloads "
        f"(wall, median of {args.rounds} interleaved rounds; target 0.6x)."
    )
    save("log_many() per event", f"python bench/log_many.py --rounds {args.rounds}", body)


if __name__ == "__main__":
    main()
