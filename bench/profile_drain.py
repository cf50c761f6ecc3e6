"""Where each microsecond of a drain goes, per store: a pyinstrument profile, summarised.

    python bench/profile_drain.py [--events 50000]

One in-process worker (the real Queue, BatchInserter and store against real servers, the
supabase store through nginx) drains a backlog batch after batch on one thread, without
the read-ahead, so every step shows on one timeline: reading from Redis, decoding,
encoding the rows, waiting for the store, acking. The summary gives each step's wall time
per event; the pipelined drain overlaps the store wait with the next read, decode and
encode (the supabase store's body is made ahead) and with the previous batch's ack.
"""

from __future__ import annotations

import argparse
import threading
import time

import redis
from common import Services, save, services, table
from drain import fill, truncate
from pyinstrument import Profiler
from pyinstrument.frame import Frame

from auditq.config import load_settings
from auditq.keys import Keys
from auditq.queue import Queue
from auditq.stats import Stats
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore
from worker.batching import AdaptiveBatch
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter

# Frames are named by (function, file ending).
READ = ("read", "auditq/queue.py")
DECODE = ("decode_batch", "worker/insert.py")
ENCODE = ("encode_rows", "")
INSERTS = [("insert_rows", ""), ("insert_encoded", "")]
ACK = ("_flush", "worker/insert.py")
# Inside insert_rows, the calls that send the batch and wait for the store's answer (the
# POST; for COPY the end of the copy and the commit); the rest of it builds the rows.
WAIT = [("post", "httpx/_client.py"), ("__exit__", "contextlib.py")]


def matches(frame: Frame, name: tuple[str, str]) -> bool:
    return frame.function == name[0] and (frame.file_path or "").endswith(name[1])


def outermost(frame: Frame, names: list[tuple[str, str]]) -> list[Frame]:
    """The outermost frames below frame (itself included) that match one of names."""
    if any(matches(frame, name) for name in names):
        return [frame]
    return [found for child in frame.children for found in outermost(child, names)]


def seconds(frames: list[Frame]) -> float:
    return sum(frame.time for frame in frames)


def profile(svc: Services, store_name: str, n: int) -> tuple[list[list], float]:
    truncate(svc.dsn)
    fill(svc, n)
    client = redis.Redis.from_url(svc.redis.url)
    keys = Keys("audit")
    queue = Queue(client, keys, 10_000_000)
    queue.ensure_group()
    if store_name == "postgres":
        store = PostgresStore(svc.dsn)
    else:
        store = SupabaseStore(svc.supabase.url, svc.supabase.service_key)
    settings = load_settings(redis_url=svc.redis.url)
    sizer = AdaptiveBatch.for_store(store_name, settings)
    status = WorkerStatus(stopping=threading.Event(), batch_size=sizer.size)
    inserter = BatchInserter(
        queue, Stats(client, keys), store, sizer, status,
        max_event_bytes=settings.max_event_bytes, retry_base=0.5, retry_max=5,
    )  # fmt: skip
    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    profiler.start()
    while entries := queue.read(inserter.consumer, sizer.read_count()):
        with inserter.lock:
            inserter.handle(entries, len(entries) >= sizer.read_count())
    profiler.stop()
    elapsed = time.perf_counter() - started
    store.close()
    root = profiler.last_session.root_frame()
    assert root is not None
    inserts = outermost(root, INSERTS)
    waits = [w for frame in inserts for child in frame.children for w in outermost(child, WAIT)]
    encoded = seconds(outermost(root, [ENCODE]))  # inside decode_batch: the body made ahead
    steps = [
        ("read from Redis (XREADGROUP + entries)", seconds(outermost(root, [READ]))),
        ("decode + validate (msgspec fast path)", seconds(outermost(root, [DECODE])) - encoded),
        (
            "rows -> request (orjson body / COPY rows)",
            encoded + seconds(inserts) - seconds(waits),
        ),
        ("send + wait for the store (POST / COPY end + commit)", seconds(waits)),
        ("ack + counters (one MULTI)", seconds(outermost(root, [ACK]))),
    ]
    total = root.time
    steps.append(
        ("everything else (loop, retry wrapper, chunking)", total - sum(t for _, t in steps))
    )
    cpu = profiler.last_session.cpu_time
    rows = [[store_name, label, t / n * 1e6, t / total] for label, t in steps]
    rows.append(
        [
            store_name,
            "total wall (of which CPU)",
            f"{total / n * 1e6:.1f} ({cpu / n * 1e6:.1f})",
            1.0,
        ]
    )
    print(profiler.output_text(unicode=False, show_all=False))
    return rows, n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    rows = []
    rates = {}
    with services() as svc:
        for store in ("postgres", "supabase"):
            store_rows, rates[store] = profile(svc, store, args.events)
            rows += store_rows
    body = table(["store", "step", "us/event (wall)", "share"], rows)
    body += "\n\nSequential (no read-ahead), under the profiler: " + ", ".join(
        f"{store} {rate:,.0f} events/s" for store, rate in rates.items()
    )
    save("Drain profile", f"python bench/profile_drain.py --events {args.events}", body)


if __name__ == "__main__":
    main()
