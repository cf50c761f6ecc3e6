"""Where the worker's per-entry CPU goes in decoding: the fast path (msgspec,
auditq/events.py) against the model it stands in for, in one run (``log_many``'s own fast
path is priced step by step in bench/log_many.py).

    python bench/decode_compare.py [--events 20000] [--repeat 7]

Per stream entry: ``decode_rows`` as the worker calls it, against the model alone
(``model_decode``: how every entry was decoded before the fast path, the id and time a
producer left out derived from the entry id), for entries as the Python client writes them
(with an id and a time) and as producers in other languages may (without). Each figure is
the median of interleaved rounds of the thread's CPU time (the machine is shared: CPU time
moves less than wall time).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import orjson
from common import save, table
from drain import events

from auditq.decoding import decode_rows, model_decode

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
                "fast": lambda e=entries: decode_rows(e, MAX_BYTES),
                "model": lambda p=pairs: [model_decode(raw, i) for i, raw in p],
            },
            n,
            repeat,
        ).values()
        worker_rows.append([label, fast, model, model / fast])

    body = "Worker: decode and validate one stream entry (CPU)\n\n" + table(
        ["entries", "`decode_rows` us/entry", "the model alone us/entry", "speed-up"],
        worker_rows,
    )
    save("Decode costs", f"python bench/decode_compare.py --events {n}", body)


if __name__ == "__main__":
    main()
