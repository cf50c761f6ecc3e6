"""COPY beside a thread that holds the GIL: what the worker's read-ahead can cost its insert.

    python bench/copy_convoy.py [--events 100000] [--repeat 5]

The pipelined worker (worker/pipeline.py) decodes batch N+1 on one thread while another
COPYs batch N. Every time the COPY thread waits on its socket (each 32 KB of rows sent,
BEGIN, COPY's end, COMMIT) it lets go of the GIL, and to go on it must wait for the other
thread to give it back: up to the switch interval (5 ms by default), while Postgres may
sit idle. This measures that cost on its own, with nothing else of the worker: the postgres
store's rows COPYed in COPY_BATCH-row statements, one connection, in interleaved rounds:
- alone;
- beside a thread running Python without pause (the worst read-ahead: always busy), at the
  default switch interval and at 0.2 ms;
and the same with each batch's binary COPY stream made beforehand (psycopg's public
``Copy(..., writer=FileWriter(...))``), so that the COPY thread only sends bytes.
Reported: microseconds of wall time per row (median), and the ratio to rows COPYed alone.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time

import psycopg
from common import save, services, table
from drain import COPY_BATCH, events, row_count, truncate
from psycopg.copy import FileWriter

from auditq.events import ROW_COLUMNS, build_event, event_row
from auditq.stores.copy import binary_copy, use_dumpers
from auditq.stores.postgres import COPY_TYPES

NAME = "COPY beside a busy thread"
DEFAULT_INTERVAL = sys.getswitchinterval()
CASES = [  # name: (sent as, busy thread, switch interval)
    ("rows, alone", "rows", False, DEFAULT_INTERVAL),
    ("rows, beside a busy thread", "rows", True, DEFAULT_INTERVAL),
    ("rows, beside a busy thread, 0.2 ms interval", "rows", True, 0.0002),
    ("bytes made ahead, alone", "bytes", False, DEFAULT_INTERVAL),
    ("bytes made ahead, beside a busy thread", "bytes", True, DEFAULT_INTERVAL),
    ("bytes made ahead, beside a busy thread, 0.2 ms interval", "bytes", True, 0.0002),
]
STATEMENT = f"copy public.audit_logs ({', '.join(ROW_COLUMNS)}) from stdin (format binary)"


def busy(stop: threading.Event) -> None:
    """Python that never waits: the GIL is given up only when the interpreter asks."""
    total = 0
    while not stop.is_set():
        for i in range(1000):
            total += i


def run(dsn: str, batches: list, sent_as: str, beside_busy: bool, interval: float) -> float:
    """Wall microseconds per row for COPYing every batch (committed one by one); each batch
    is (its rows or its stream, how many rows)."""
    truncate(dsn)
    stop = threading.Event()
    other = threading.Thread(target=busy, args=(stop,)) if beside_busy else None
    rows = sum(count for _, count in batches)
    with psycopg.connect(dsn) as conn:
        sys.setswitchinterval(interval)
        if other:
            other.start()
        started = time.perf_counter()
        for batch, _ in batches:
            with conn.cursor() as cur:
                if sent_as == "rows":
                    with binary_copy(cur, "public.audit_logs", ROW_COLUMNS, COPY_TYPES) as copy:
                        for row in batch:
                            copy.write_row(row)
                else:
                    with cur.copy(STATEMENT) as copy:
                        copy.write(batch)
            conn.commit()
        elapsed = time.perf_counter() - started
        stop.set()
        if other:
            other.join()
        sys.setswitchinterval(DEFAULT_INTERVAL)
    assert row_count(dsn) == rows
    return elapsed / rows * 1e6


def stream(conn: psycopg.Connection, batch: list[list]) -> bytes:
    """The batch's whole binary COPY stream, made without the server: a ``Copy`` created by
    hand sends no statement, and its writer here is a buffer (psycopg's FileWriter)."""
    buffer = io.BytesIO()
    cur = conn.cursor()
    use_dumpers(cur)  # the store's, as binary_copy registers them
    with psycopg.Copy(cur, binary=True, writer=FileWriter(buffer)) as copy:
        copy.set_types(COPY_TYPES)
        for row in batch:
            copy.write_row(row)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = [event_row(event, "queue") for event in map(build_event, events(args.events))]
    batches = [rows[i : i + COPY_BATCH] for i in range(0, len(rows), COPY_BATCH)]
    times: dict[str, list[float]] = {name: [] for name, *_ in CASES}
    with services() as svc:
        with psycopg.connect(svc.dsn) as conn:
            streams = [(stream(conn, batch), len(batch)) for batch in batches]
        for _ in range(args.repeat):
            for name, sent_as, beside_busy, interval in CASES:
                data = [(b, len(b)) for b in batches] if sent_as == "rows" else streams
                times[name].append(run(svc.dsn, data, sent_as, beside_busy, interval))
                print(f"{name}: {times[name][-1]:.1f} us/row", flush=True)
    alone = statistics.median(times[CASES[0][0]])
    body = table(
        ["COPY", "us/row (median)", "runs", "x rows alone"],
        [
            [name, f"{statistics.median(t):.1f}", ", ".join(f"{x:.1f}" for x in t),
             f"{statistics.median(t) / alone:.2f}"]
            for name, t in times.items()
        ],
    )  # fmt: skip
    body += (
        f"\n\n{args.events:,} rows (bench/drain.py's, as the postgres store sends them) in "
        f"{COPY_BATCH:,}-row COPYs, one connection; default switch interval "
        f"{DEFAULT_INTERVAL * 1000:g} ms; {args.repeat} interleaved rounds."
    )
    save(NAME, f"python bench/copy_convoy.py --events {args.events} --repeat {args.repeat}", body)


if __name__ == "__main__":
    main()
