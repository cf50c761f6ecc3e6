#!/usr/bin/env python
"""Drain rate with personal fields encrypted (AUDITQ_PII_KEY) against without, same run.

    python bench/pii.py --events 50000 --rounds 3

One worker drains EVENTS queued events (bench/drain.py's events: 5,000 distinct actors, and
an ip to encrypt in every row) into Postgres, ROUNDS times each way, interleaved:
- off: no AUDITQ_PII_KEY;
- on, new keys: the data keys dropped first, so the run creates 5,000 of them (a backlog
  of actors never seen before: the worst case);
- on, keys exist: the actors have keys already (the steady state), the worker's cache
  starts empty (a new process).
Target: encryption on >= 0.8x the rate with it off.

Then the encryption step alone, on this thread (``Encryptor.seal`` over the same events in
the worker's batches of 1,000, sealed in place as the worker does, with its collector
threshold, against the same Postgres): CPU per event with the keys cached (the steady
state), with them in the store only (a new process), and with none yet (new subjects),
and the garbage collection that ran within it. The drain's difference is
this plus what the sealed rows cost the insert and the collector afterwards.

Last, the worker's decode of a batch of 5,000 entries with encryption on
(``BatchInserter.decode_batch``, keys cached), as it runs: each part of SEALED_PART entries
sealed right after it is decoded, against the whole batch decoded, then sealed (the part
set to the batch): CPU per event, interleaved, median and best of ROUNDS x 3.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import statistics
import threading
import time

import orjson
import psycopg
from common import Services, save, services, table
from drain import drain_rate, events

import worker.insert
from auditq.config import Settings
from auditq.events import Row, build_event, event_row
from auditq.keys import Keys
from auditq.pii.writer import native, sealer
from auditq.queue import Entry, Queue, connect
from auditq.stats import Stats
from auditq.stores.postgres import PostgresStore
from worker.app import YOUNG_OBJECTS
from worker.batching import AdaptiveBatch
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter

NAME = "Drain with personal fields encrypted"
TARGET = 0.8
MODES = ("off", "on, new keys", "on, keys exist")
BATCH = 1000  # the worker's batch size in these drains
STEPS = ("keys cached", "keys in the store", "new keys")
WORKER_BATCH = 5000  # the postgres store's batches in a drain grow to about this


def drop_keys(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate public.audit_pii_keys")


class GcClock:
    """CPU seconds this thread spends in garbage collection."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start


def batches(n: int) -> list[list[Row]]:
    built = [event_row(build_event(e), "queue") for e in events(n)]
    return [built[i : i + BATCH] for i in range(0, n, BATCH)]


def seal_cpu(svc: Services, key: str, n: int, step: str, clock: GcClock) -> tuple[float, float]:
    """One pass of the encryption step over n events, as the worker runs it (its own events
    sealed in place, its collector threshold): (this thread's CPU, the collector's share of
    it), in us/event. The stores write the sealed rows as they are (the pii column is JSON
    text already). (Postgres' share is too small to read from its processes' CPU counters
    here: the drain table has it, per event, for the whole drain.)"""
    store = PostgresStore(svc.dsn)
    seal = sealer(Settings(pii_key=key), store)
    measured = batches(n)
    store.ping()  # the connection opened beforehand
    if step == "new keys":
        drop_keys(svc.dsn)
    else:
        for batch in batches(n):  # other events of the same subjects: their keys
            seal(batch)
        if step == "keys in the store":
            seal = sealer(Settings(pii_key=key), store)
    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS)
    collector, started = clock.seconds, time.thread_time()
    for batch in measured:
        seal(batch)
    cpu = time.thread_time() - started
    gc.set_threshold(*threshold)
    per_event = 1e6 / n
    store.close()
    return cpu * per_event, (clock.seconds - collector) * per_event


def decode_cpu(svc: Services, key: str, n: int, rounds: int) -> dict[int, list[float]]:
    """CPU us/event of ``decode_batch`` over n entries in batches of WORKER_BATCH, by part
    size (SEALED_PART, and the whole batch), interleaved; keys cached, the worker's
    collector threshold, a new set of rows each time (the worker's own)."""
    store, client = PostgresStore(svc.dsn), connect(svc.redis.url)
    inserter = BatchInserter(
        Queue(client, Keys("audit"), max_len=10_000_000), Stats(client, Keys("audit")), store,
        AdaptiveBatch(start=WORKER_BATCH, minimum=1, maximum=WORKER_BATCH,
                      max_bytes=64_000_000, target_ms=600_000),
        WorkerStatus(stopping=threading.Event(), batch_size=WORKER_BATCH, pid=os.getpid()),
        max_event_bytes=65_536, retry_base=0.1, retry_max=0.5,
        seal=sealer(Settings(pii_key=key), store),
    )  # fmt: skip
    payloads = [orjson.dumps(event) for event in events(n)]
    inserter.seal([event_row(build_event(e), "queue") for e in events(5000)])  # keys cached
    parts = (worker.insert.SEALED_PART, WORKER_BATCH)
    cpu: dict[int, list[float]] = {part: [] for part in parts}
    threshold = gc.get_threshold()
    try:
        for _ in range(rounds * 3):
            for part in parts:
                entries = [Entry(f"{1_700_000_000_000 + i}-0", {b"event": raw})
                           for i, raw in enumerate(payloads)]  # fmt: skip
                worker.insert.SEALED_PART = part
                gc.collect()
                gc.set_threshold(YOUNG_OBJECTS)
                started = time.thread_time()
                for at in range(0, n, WORKER_BATCH):
                    decoded = inserter.decode_batch(entries[at : at + WORKER_BATCH])
                    assert decoded.sealed and not decoded.dead
                cpu[part].append((time.thread_time() - started) * 1e6 / n)
                gc.set_threshold(*threshold)
    finally:
        worker.insert.SEALED_PART = parts[0]
        store.close()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    key = base64.b64encode(os.urandom(32)).decode()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    store_cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    step_cpu: dict[str, list[tuple[float, float]]] = {step: [] for step in STEPS}
    clock = GcClock()
    with services() as svc:
        for _ in range(args.rounds):
            for mode in MODES:
                if mode != "on, keys exist":
                    drop_keys(svc.dsn)
                knobs = {"pii_key": key} if mode != "off" else {}
                run = drain_rate(svc, "postgres", args.events, 1, **knobs)
                rates[mode].append(run.rate)
                cpu[mode].append(run.client_us)
                store_cpu[mode].append(run.store_us)
                print(f"{mode}: {run.rate:,.0f} events/s, worker {run.client_us:.1f} us/event")
            for step in STEPS:
                step_cpu[step].append(seal_cpu(svc, key, args.events, step, clock))
                print(f"seal, {step}: " + ", ".join(f"{v:.1f}" for v in step_cpu[step][-1]))
        by_part = decode_cpu(svc, key, args.events, args.rounds)
    off = statistics.median(rates["off"])
    rows = [
        [mode, f"{statistics.median(rates[mode]):,.0f}",
         ", ".join(f"{r:,.0f}" for r in rates[mode]), f"{statistics.median(cpu[mode]):.1f}",
         f"{statistics.median(store_cpu[mode]):.1f}"]
        for mode in MODES
    ]  # fmt: skip
    steps = [
        [step] + [f"{statistics.median(run[i] for run in step_cpu[step]):.1f}" for i in range(2)]
        for step in STEPS
    ]
    ratios = []
    for mode in MODES[1:]:
        ratio = statistics.median(rates[mode]) / off
        # Each round's runs side by side, as bench/drain.py's ratios: a slow minute moves
        # both, where the medians may come from different minutes.
        paired = statistics.median(r / o for r, o in zip(rates[mode], rates["off"], strict=True))
        verdict = "met" if min(ratio, paired) >= TARGET else "NOT met"
        ratios.append(f"{mode}: **{ratio:.2f}x**, each round's own **{paired:.2f}x** ({verdict})")
    body = (
        table(["encryption", "median events/s", "runs", "worker CPU us/event",
               "Postgres CPU us/event"], rows)
        + f"\n\nRatio to off (target >= {TARGET}x), as the medians' ratio and as the median"
        + " of each round's own ratio (met only if both are): "
        + "; ".join(ratios)
        + f". One worker, postgres store, {args.events:,} events, 5,000 actors, ip encrypted"
        + (" by native/auditq_pii.c." if native else " in Python (native/auditq_pii.c not built).")
        + "\n\nThe encryption step alone (Encryptor.seal on one thread, batches of "
        + f"{BATCH:,}, the same events, sealed in place with the worker's collector "
        + f"threshold), median of {args.rounds}:\n\n"
        + table(["seal", "CPU us/event", "of which garbage collection"], steps)
        + f"\n\nThe decode of a batch of {WORKER_BATCH:,} entries with encryption on "
        + "(`BatchInserter.decode_batch`, keys cached), sealed by parts as the worker does "
        + f"against the whole batch at once, {len(next(iter(by_part.values())))} interleaved"
        + " runs:\n\n"
        + table(["sealed by parts of", "CPU us/event, median", "best"], [
            [f"{part:,}" + (" (the worker)" if part == worker.insert.SEALED_PART else
                            " (the whole batch)"),
             f"{statistics.median(v):.2f}", f"{min(v):.2f}"]
            for part, v in by_part.items()
        ])
    )  # fmt: skip
    save(NAME, f"python bench/pii.py --events {args.events} --rounds {args.rounds}", body)


if __name__ == "__main__":
    main()
